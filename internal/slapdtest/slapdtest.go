//go:build linux

package slapdtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The directory's layout, the same for every server.
const (
	BaseDN          = "dc=dls,dc=test"
	RootDN          = "cn=admin," + BaseDN
	RootPassword    = "root-secret"
	PeopleDN        = "ou=people," + BaseDN
	GroupsDN        = "ou=groups," + BaseDN
	ServicesDN      = "ou=services," + BaseDN
	ServiceDN       = "cn=dls," + ServicesDN
	ServicePassword = "service-secret"
)

// SchemaDir holds the schema files slapd.conf includes (core, cosine, nis,
// inetorgperson).
const SchemaDir = "/etc/ldap/schema"

// Server is an OpenLDAP server run by a test, on loopback ports of its
// own, with a throwaway database. The DN and password fields repeat the
// package's constants for convenience.
type Server struct {
	URL      string // ldap://127.0.0.1:port
	LDAPSURL string // ldaps://127.0.0.1:port
	CAFile   string // PEM of the CA that signed the server's certificate (for 127.0.0.1 and localhost)

	BaseDN          string
	RootDN          string
	RootPassword    string
	PeopleDN        string
	GroupsDN        string
	ServiceDN       string
	ServicePassword string

	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	stop sync.Once

	mu      sync.Mutex
	nextGID int
}

// An Option adds to the directory once the server runs, in the order
// given to Start.
type Option func(t testing.TB, s *Server)

// WithUser adds a user (see Server.AddUser).
func WithUser(uid, password string, groups ...string) Option {
	return func(t testing.TB, s *Server) { t.Helper(); s.AddUser(t, uid, password, groups...) }
}

// WithGroup adds a groupOfNames with members given by DN (see
// Server.AddGroup).
func WithGroup(cn string, memberDNs ...string) Option {
	return func(t testing.TB, s *Server) { t.Helper(); s.AddGroup(t, cn, memberDNs...) }
}

// WithPosixGroup adds a posixGroup with members given by uid (see
// Server.AddPosixGroup).
func WithPosixGroup(cn string, memberUIDs ...string) Option {
	return func(t testing.TB, s *Server) { t.Helper(); s.AddPosixGroup(t, cn, memberUIDs...) }
}

// Path finds the slapd binary. Without it the test is skipped, except in
// CI (the CI environment variable set), where it fails: CI installs it
// with .ci/ldap-setup.sh.
func Path(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/slapd", "/usr/local/sbin/slapd", "/usr/local/libexec/slapd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("slapd"); err == nil {
		return p
	}
	const msg = "slapd is not installed (Debian: apt-get install slapd ldap-utils, or .ci/ldap-setup.sh)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must run these tests")
	}
	t.Skip(msg)
	return ""
}

// Start starts slapd in the foreground as a child process, waits until it
// answers, adds the skeleton (the base, ou=people, ou=groups, ou=services
// and the service account), then applies opts. The server is stopped and
// its files removed when the test ends. See the package comment for when
// it skips.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := Path(t)
	for _, f := range []string{"core", "cosine", "nis", "inetorgperson"} {
		if _, err := os.Stat(filepath.Join(SchemaDir, f+".schema")); err != nil {
			t.Fatalf("slapd schema: %v", err)
		}
	}
	var lastErr error
	// A free port can be taken between finding it and slapd binding it:
	// try again with new ports.
	for range 3 {
		s, err := tryStart(t, bin)
		if err == nil {
			s.skeleton(t)
			for _, o := range opts {
				o(t, s)
			}
			return s
		}
		lastErr = err
	}
	t.Fatalf("start slapd: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, bin string) (*Server, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "dls-slapd-*")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	ca, cert, key := makeCerts(t, dir)
	conf := fmt.Sprintf(`# written by github.com/dls-project/dls/internal/slapdtest
include %[1]s/core.schema
include %[1]s/cosine.schema
include %[1]s/nis.schema
include %[1]s/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[2]s/slapd.pid
argsfile %[2]s/slapd.args
TLSCACertificateFile %[3]s
TLSCertificateFile %[4]s
TLSCertificateKeyFile %[5]s

database mdb
maxsize 16777216
suffix "%[6]s"
rootdn "%[7]s"
rootpw %[8]s
directory %[2]s/db
access to attrs=userPassword
	by self write
	by anonymous auth
	by * none
access to *
	by * read
`, SchemaDir, dir, ca, cert, key, BaseDN, RootDN, RootPassword)
	if _, err := os.Stat("/usr/lib/ldap/back_mdb.la"); err != nil {
		// Built with back_mdb inside (not Debian): no module to load.
		conf = strings.Replace(conf, "modulepath /usr/lib/ldap\nmoduleload back_mdb\n", "", 1)
	}
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	ldapPort, ldapsPort := FreePort(t), FreePort(t)
	s := &Server{
		URL:             fmt.Sprintf("ldap://127.0.0.1:%d", ldapPort),
		LDAPSURL:        fmt.Sprintf("ldaps://127.0.0.1:%d", ldapsPort),
		CAFile:          ca,
		BaseDN:          BaseDN,
		RootDN:          RootDN,
		RootPassword:    RootPassword,
		PeopleDN:        PeopleDN,
		GroupsDN:        GroupsDN,
		ServiceDN:       ServiceDN,
		ServicePassword: ServicePassword,
		logs:            &syncBuffer{},
		done:            make(chan struct{}),
		nextGID:         5000,
	}
	// -d 0: stay in the foreground (a child of the test), log nothing but
	// errors to stderr.
	s.cmd = exec.Command(bin, "-f", confPath, "-h", s.URL+"/ "+s.LDAPSURL+"/", "-d", "0")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)

	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
		if err == nil {
			err = conn.Bind(RootDN, RootPassword)
			conn.Close()
			if err == nil {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("slapd exited: %s", s.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("slapd does not answer on %s: %v\n%s", s.URL, err, s.logs.String())
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10s) and waits for
// it. It may be called more than once; Start arranges a call when the
// test ends.
func (s *Server) Stop() {
	s.stop.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Logs returns what slapd wrote to stdout and stderr (errors only; at
// most about 64 KiB).
func (s *Server) Logs() string { return s.logs.String() }

// FreePort returns a TCP port on 127.0.0.1 where nothing listened a
// moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// UserDN is the DN of the user uid under PeopleDN, uid DN-escaped.
func UserDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + PeopleDN }

// GroupDN is the DN of the group cn under GroupsDN, cn DN-escaped.
func GroupDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + GroupsDN }

// DialRoot connects to the server's ldap:// URL and binds as the rootdn.
// The caller closes the connection.
func (s *Server) DialRoot(t testing.TB) *ldap.Conn {
	t.Helper()
	conn, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Bind(RootDN, RootPassword); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn
}

// AddEntry adds an entry as the rootdn.
func (s *Server) AddEntry(t testing.TB, dn string, attrs map[string][]string) {
	t.Helper()
	conn := s.DialRoot(t)
	defer conn.Close()
	add(t, conn, dn, attrs)
}

func add(t testing.TB, conn *ldap.Conn, dn string, attrs map[string][]string) {
	t.Helper()
	req := ldap.NewAddRequest(dn, nil)
	for k, v := range attrs {
		req.Attribute(k, v)
	}
	if err := conn.Add(req); err != nil {
		t.Fatalf("slapd: add %s: %v", dn, err)
	}
}

// skeleton adds the base, the three OUs and the service account.
func (s *Server) skeleton(t testing.TB) {
	t.Helper()
	conn := s.DialRoot(t)
	defer conn.Close()
	add(t, conn, BaseDN, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"dls"}, "o": {"DLS test"}})
	for _, ou := range []string{"people", "groups", "services"} {
		add(t, conn, "ou="+ou+","+BaseDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {ou}})
	}
	add(t, conn, ServiceDN, map[string][]string{
		"objectClass": {"organizationalRole", "simpleSecurityObject"}, "cn": {"dls"}, "userPassword": {SSHA(ServicePassword)},
	})
}

// AddUser adds the user uid (an inetOrgPerson at UserDN(uid), with uid, cn
// and sn set to uid and an {SSHA} hash of password) and makes it a member
// of each of groups: groupOfNames entries under GroupsDN, created when
// missing (see AddGroup).
func (s *Server) AddUser(t testing.TB, uid, password string, groups ...string) {
	t.Helper()
	conn := s.DialRoot(t)
	defer conn.Close()
	add(t, conn, UserDN(uid), map[string][]string{
		"objectClass":  {"inetOrgPerson"},
		"uid":          {uid},
		"cn":           {uid},
		"sn":           {uid},
		"userPassword": {SSHA(password)},
	})
	for _, g := range groups {
		addMembers(t, conn, g, "member", []string{UserDN(uid)}, func() map[string][]string {
			return map[string][]string{"objectClass": {"groupOfNames"}, "cn": {g}, "member": {UserDN(uid)}}
		})
	}
}

// AddGroup makes memberDNs members of the groupOfNames cn under GroupsDN,
// creating it if it does not exist. A groupOfNames must have a member:
// give at least one.
func (s *Server) AddGroup(t testing.TB, cn string, memberDNs ...string) {
	t.Helper()
	if len(memberDNs) == 0 {
		t.Fatalf("slapd: group %s: a groupOfNames needs at least one member", cn)
	}
	conn := s.DialRoot(t)
	defer conn.Close()
	addMembers(t, conn, cn, "member", memberDNs, func() map[string][]string {
		return map[string][]string{"objectClass": {"groupOfNames"}, "cn": {cn}, "member": memberDNs}
	})
}

// AddPosixGroup makes memberUIDs members (memberUid) of the posixGroup cn
// under GroupsDN, creating it, with the next free gidNumber from 5000, if
// it does not exist. The uids need not be users in the directory.
func (s *Server) AddPosixGroup(t testing.TB, cn string, memberUIDs ...string) {
	t.Helper()
	conn := s.DialRoot(t)
	defer conn.Close()
	addMembers(t, conn, cn, "memberUid", memberUIDs, func() map[string][]string {
		s.mu.Lock()
		gid := s.nextGID
		s.nextGID++
		s.mu.Unlock()
		attrs := map[string][]string{"objectClass": {"posixGroup"}, "cn": {cn}, "gidNumber": {strconv.Itoa(gid)}}
		if len(memberUIDs) > 0 {
			attrs["memberUid"] = memberUIDs
		}
		return attrs
	})
}

// addMembers adds values of attr to the group cn, or, when the group does
// not exist, adds the entry newEntry returns.
func addMembers(t testing.TB, conn *ldap.Conn, cn, attr string, values []string, newEntry func() map[string][]string) {
	t.Helper()
	dn := GroupDN(cn)
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil))
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		add(t, conn, dn, newEntry())
		return
	case err != nil:
		t.Fatalf("slapd: look up group %s: %v", dn, err)
	case len(res.Entries) != 1:
		t.Fatalf("slapd: look up group %s: %d entries", dn, len(res.Entries))
	}
	if len(values) == 0 {
		return
	}
	req := ldap.NewModifyRequest(dn, nil)
	req.Add(attr, values)
	if err := conn.Modify(req); err != nil {
		t.Fatalf("slapd: add %s to %s: %v", attr, dn, err)
	}
}

// SSHA is an OpenLDAP {SSHA} userPassword value for password, with a
// random salt.
func SSHA(password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	sum := sha1.Sum(append([]byte(password), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(sum[:], salt...))
}

// makeCerts writes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it, and returns the three PEM files' paths.
func makeCerts(t testing.TB, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "DLS test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "PRIVATE KEY", keyDER)
}

// syncBuffer collects slapd's output for error messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 64<<10 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
