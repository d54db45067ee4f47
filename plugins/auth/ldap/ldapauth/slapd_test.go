//go:build linux

package ldapauth_test

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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The directory every test gets (see populate).
const (
	baseDN    = "dc=dls,dc=test"
	rootDN    = "cn=admin," + baseDN
	rootPW    = "root-secret"
	peopleDN  = "ou=people," + baseDN
	groupsDN  = "ou=groups," + baseDN
	serviceDN = "cn=dls,ou=services," + baseDN
	servicePW = "service-secret"
)

// testUsers are the people in the directory: uid → password.
var testUsers = map[string]string{
	"alice":  "alice-password", // in admins (member) and ops (memberUid)
	"bob":    "bob-password",   // in ops (memberUid)
	"carol":  "carol-password", // in no group
	"x,y+z":  "comma-password", // a name that needs DN escaping
	"o(b)*n": "paren-password", // a name that needs filter escaping; in ops
}

// slapd is an OpenLDAP server run by a test, on loopback ports of its own,
// with a throwaway database.
type slapd struct {
	URL      string // ldap://127.0.0.1:port
	LDAPSURL string // ldaps://127.0.0.1:port
	CAFile   string // PEM of the CA that signed the server's certificate

	dir  string
	cmd  *exec.Cmd
	errs *syncBuffer
	done chan struct{}
	stop sync.Once
}

// slapdPath finds the slapd binary. Without it the test is skipped, except
// in CI (the CI environment variable set), where it fails: CI installs it
// with .ci/ldap-setup.sh.
func slapdPath(t testing.TB) string {
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

// schemaDir holds the schema files slapd.conf includes.
const schemaDir = "/etc/ldap/schema"

// startSlapd starts slapd in the foreground as a child process, waits
// until it answers, fills the directory (see populate) and stops it when
// the test ends.
func startSlapd(t testing.TB) *slapd {
	t.Helper()
	bin := slapdPath(t)
	for _, f := range []string{"core", "cosine", "nis", "inetorgperson"} {
		if _, err := os.Stat(filepath.Join(schemaDir, f+".schema")); err != nil {
			t.Fatalf("slapd schema: %v", err)
		}
	}
	var lastErr error
	// A free port can be taken between finding it and slapd binding it:
	// try again with new ports.
	for range 3 {
		s, err := tryStartSlapd(t, bin)
		if err == nil {
			populate(t, s)
			return s
		}
		lastErr = err
	}
	t.Fatalf("start slapd: %v", lastErr)
	return nil
}

func tryStartSlapd(t testing.TB, bin string) (*slapd, error) {
	dir, err := os.MkdirTemp("", "dls-slapd-*")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	ca, cert, key := makeCerts(t, dir)
	conf := fmt.Sprintf(`# written by the ldap auth plugin's tests
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
`, schemaDir, dir, ca, cert, key, baseDN, rootDN, rootPW)
	if _, err := os.Stat("/usr/lib/ldap/back_mdb.la"); err != nil {
		// Built with back_mdb inside (not Debian): no module to load.
		conf = strings.Replace(conf, "modulepath /usr/lib/ldap\nmoduleload back_mdb\n", "", 1)
	}
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	ldapPort, ldapsPort := freePort(t), freePort(t)
	s := &slapd{
		URL:      fmt.Sprintf("ldap://127.0.0.1:%d", ldapPort),
		LDAPSURL: fmt.Sprintf("ldaps://127.0.0.1:%d", ldapsPort),
		CAFile:   ca,
		dir:      dir,
		errs:     &syncBuffer{},
		done:     make(chan struct{}),
	}
	// -d 0: stay in the foreground (a child of the test), log nothing but
	// errors to stderr.
	s.cmd = exec.Command(bin, "-f", confPath, "-h", s.URL+"/ "+s.LDAPSURL+"/", "-d", "0")
	s.cmd.Stdout, s.cmd.Stderr = s.errs, s.errs
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
			err = conn.Bind(rootDN, rootPW)
			conn.Close()
			if err == nil {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("slapd exited: %s", s.errs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("slapd does not answer on %s: %v\n%s", s.URL, err, s.errs.String())
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (s *slapd) Stop() {
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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// populate adds the test directory as the rootdn:
//
//	dc=dls,dc=test
//	  ou=people: alice, bob, carol, "x,y+z", "o(b)*n" (inetOrgPerson, {SSHA} passwords)
//	  ou=groups: cn=admins (groupOfNames: alice), cn=ops (posixGroup: bob, alice, o(b)*n),
//	             cn=nobody (groupOfNames: cn=admin)
//	  ou=services: cn=dls (the service account)
func populate(t testing.TB, s *slapd) {
	t.Helper()
	conn := s.dialRoot(t)
	defer conn.Close()
	add := func(dn string, attrs map[string][]string) {
		t.Helper()
		req := ldap.NewAddRequest(dn, nil)
		for k, v := range attrs {
			req.Attribute(k, v)
		}
		if err := conn.Add(req); err != nil {
			t.Fatalf("add %s: %v", dn, err)
		}
	}
	add(baseDN, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"dls"}, "o": {"DLS test"}})
	for _, ou := range []string{"people", "groups", "services"} {
		add("ou="+ou+","+baseDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {ou}})
	}
	for uid, pw := range testUsers {
		add(userDN(uid), map[string][]string{
			"objectClass":  {"inetOrgPerson"},
			"uid":          {uid},
			"cn":           {uid},
			"sn":           {uid},
			"userPassword": {ssha(pw)},
		})
	}
	add(serviceDN, map[string][]string{
		"objectClass": {"organizationalRole", "simpleSecurityObject"}, "cn": {"dls"}, "userPassword": {ssha(servicePW)},
	})
	add("cn=admins,"+groupsDN, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {"admins"}, "member": {userDN("alice")}})
	add("cn=nobody,"+groupsDN, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {"nobody"}, "member": {rootDN}})
	add("cn=ops,"+groupsDN, map[string][]string{
		"objectClass": {"posixGroup"}, "cn": {"ops"}, "gidNumber": {"5000"}, "memberUid": {"bob", "alice", "o(b)*n"},
	})
}

func userDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + peopleDN }

func (s *slapd) dialRoot(t testing.TB) *ldap.Conn {
	t.Helper()
	conn, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Bind(rootDN, rootPW); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn
}

// ssha is an OpenLDAP {SSHA} userPassword value.
func ssha(password string) string {
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
	caCert, _ := x509.ParseCertificate(caDER)
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
