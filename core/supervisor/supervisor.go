// Package supervisor runs one plugin instance as a child process and keeps
// it running: start, configure (through the host's Lifecycle), health
// checks, restart with exponential backoff and a crash-loop cap, drain on
// stop. Every start is a fresh exec.Cmd and go-plugin client: go-plugin
// never restarts a client.
package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"
)

// Spec describes one plugin instance.
type Spec struct {
	// Name is the instance name (the metric label "plugin").
	Name string
	// Kind and Type are the HCL block type and first label.
	Kind, Type string
	// Path is the plugin binary.
	Path string
	// SHA256, when set, is the binary's required checksum (hex).
	SHA256 string
	// Env is the plugin's whole environment (SkipHostEnv is on).
	Env []string
	// Restart is the restart policy.
	Restart RestartPolicy
	// HealthInterval, HealthTimeout and HealthFailures: the plugin is
	// killed and restarted after HealthFailures failed checks in a row.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	HealthFailures int
	// StopGrace is how long a plugin may drain before it is killed.
	StopGrace time.Duration
	// StartTimeout bounds the go-plugin handshake.
	StartTimeout time.Duration
	// Credential, when set, runs the plugin as that user and group (the
	// host must be root); the host's broker sockets are then made
	// group-writable for Credential.Gid so the plugin can reach them.
	Credential *syscall.Credential
	// AmbientCaps are capabilities the plugin keeps under Credential
	// (e.g. CAP_NET_BIND_SERVICE to bind port 67 or 69); the host must
	// hold them.
	AmbientCaps []uintptr
}

// RestartPolicy bounds restarts: the delay doubles from InitialDelay up to
// MaxDelay; after MaxFailures failures in a row the instance is left failed.
// A run longer than ResetAfter clears the failure count.
type RestartPolicy struct {
	InitialDelay time.Duration
	MaxDelay     time.Duration
	MaxFailures  int
	ResetAfter   time.Duration
}

// DefaultRestart is used for zero fields of a RestartPolicy.
var DefaultRestart = RestartPolicy{InitialDelay: 200 * time.Millisecond, MaxDelay: 30 * time.Second, MaxFailures: 5, ResetAfter: time.Minute}

func (s *Spec) applyDefaults() {
	d := DefaultRestart
	if s.Restart.InitialDelay <= 0 {
		s.Restart.InitialDelay = d.InitialDelay
	}
	if s.Restart.MaxDelay <= 0 {
		s.Restart.MaxDelay = d.MaxDelay
	}
	if s.Restart.MaxFailures <= 0 {
		s.Restart.MaxFailures = d.MaxFailures
	}
	if s.Restart.ResetAfter <= 0 {
		s.Restart.ResetAfter = d.ResetAfter
	}
	if s.HealthInterval <= 0 {
		s.HealthInterval = 5 * time.Second
	}
	if s.HealthTimeout <= 0 {
		s.HealthTimeout = 2 * time.Second
	}
	if s.HealthFailures <= 0 {
		s.HealthFailures = 3
	}
	if s.StopGrace <= 0 {
		s.StopGrace = 5 * time.Second
	}
	if s.StartTimeout <= 0 {
		s.StartTimeout = 10 * time.Second
	}
}

// Process is one running plugin process.
type Process struct {
	// Client is the kind's host-side client (protocolrpc.Client, ...).
	Client baserpc.KindClient
	// Info is what the plugin said of itself.
	Info base.Info
	// Pid is the plugin's process id.
	Pid     int
	Started time.Time

	plugin *plugin.Client
}

// Base returns the process's Base client.
func (p *Process) Base() *baserpc.Client { return p.Client.Base() }

// Lifecycle is what the host does with a started process: configure it,
// register its metrics, start serving. Teardown undoes Setup's effects when
// the process goes away.
type Lifecycle interface {
	Setup(ctx context.Context, spec Spec, p *Process) error
	Teardown(spec Spec, p *Process)
}

// Permanent marks a Setup error that a restart cannot fix (an invalid
// config, a kind mismatch): the instance goes straight to failed.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// State of an instance.
type State string

// States an instance moves through.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateBackoff  State = "backoff"
	StateFailed   State = "failed"
	StateStopped  State = "stopped"
)

// Status is a snapshot of an instance: what the admin API's GET plugins
// lists (in this JSON form) and what /readyz decides on.
type Status struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Type string `json:"type"`
	// Version and Capabilities are what the running process reported
	// (base.Info); empty while none runs.
	Version      string   `json:"version,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	State        State    `json:"state"`
	Healthy      bool     `json:"healthy"`
	Pid          int      `json:"pid,omitempty"`
	Restarts     int      `json:"restarts"`
	LastError    string   `json:"error,omitempty"`
	// Since is when the instance entered State.
	Since time.Time `json:"since,omitzero"`
}

// Metrics are the supervisor's host series, shared by every instance.
type Metrics struct {
	Restarts     *prometheus.CounterVec
	HealthChecks *prometheus.CounterVec
}

// NewMetrics declares dls_service_restarts_total{plugin} and
// dls_health_checks_total{result} on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dls_service_restarts_total", Help: "Plugin processes restarted by the supervisor: after a crash, a hang or a failed start, or for a changed binary or config.",
		}, []string{"plugin"}),
		HealthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dls_health_checks_total", Help: "Plugin health checks by result.",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.Restarts, m.HealthChecks} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register supervisor metrics: %w", err)
		}
	}
	return m, nil
}

// Supervisor keeps one plugin instance running.
type Supervisor struct {
	spec     Spec
	life     Lifecycle
	launcher *Launcher
	logger   hclog.Logger
	metrics  *Metrics

	restartCh chan struct{}

	mu       sync.Mutex
	state    State
	healthy  bool
	proc     *Process
	restarts int
	lastErr  error
	since    time.Time
	changed  chan struct{} // closed and replaced on every state change
}

// New returns a supervisor; Run starts it.
func New(spec Spec, life Lifecycle, launcher *Launcher, m *Metrics, logger hclog.Logger) *Supervisor {
	spec.applyDefaults()
	if m != nil {
		m.Restarts.WithLabelValues(spec.Name) // the series exists from the start at 0
	}
	return &Supervisor{
		spec: spec, life: life, launcher: launcher, metrics: m,
		logger: logger.Named(spec.Name), restartCh: make(chan struct{}, 1),
		state: StateStarting, since: time.Now(), changed: make(chan struct{}),
	}
}

// Spec returns the instance's spec.
func (s *Supervisor) Spec() Spec { return s.spec }

// Status returns a snapshot.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		Name: s.spec.Name, Kind: s.spec.Kind, Type: s.spec.Type, State: s.state,
		Healthy: s.healthy, Restarts: s.restarts, Since: s.since,
	}
	if s.proc != nil {
		st.Pid, st.Version, st.Capabilities = s.proc.Pid, s.proc.Info.Version, s.proc.Info.Capabilities
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	return st
}

// Process returns the running process, or nil.
func (s *Supervisor) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateRunning {
		return nil
	}
	return s.proc
}

// Changed returns a channel closed at the next state change.
func (s *Supervisor) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitSettled waits until the instance is running or failed, or ctx ends.
func (s *Supervisor) WaitSettled(ctx context.Context) State {
	for {
		st := s.Status().State
		if st == StateRunning || st == StateFailed || st == StateStopped {
			return st
		}
		select {
		case <-ctx.Done():
			return st
		case <-s.Changed():
		}
	}
}

// Restart asks for the process to be replaced (e.g. its binary changed).
// A failed instance gets a fresh start with its failure count cleared.
func (s *Supervisor) Restart() {
	select {
	case s.restartCh <- struct{}{}:
	default:
	}
}

func (s *Supervisor) setState(st State, p *Process, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.proc, s.since = st, p, time.Now()
	s.healthy = st == StateRunning
	if err != nil {
		s.lastErr = err
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Run supervises until ctx ends, then drains and stops the plugin.
func (s *Supervisor) Run(ctx context.Context) {
	failures := 0
	first := true
	for {
		if !first {
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			if s.metrics != nil {
				s.metrics.Restarts.WithLabelValues(s.spec.Name).Inc()
			}
		}
		first = false
		s.setState(StateStarting, nil, nil)
		proc, err := s.start(ctx)
		if err == nil {
			s.setState(StateRunning, proc, nil)
			s.logger.Info("plugin running", "pid", proc.Pid, "version", proc.Info.Version)
			var restartNow bool
			err, restartNow = s.watch(ctx, proc)
			s.life.Teardown(s.spec, proc)
			if ctx.Err() != nil {
				s.stop(ctx, proc)
				s.setState(StateStopped, nil, nil)
				return
			}
			if restartNow {
				s.stop(ctx, proc)
				failures = 0
				continue
			}
			proc.plugin.Kill()
			if time.Since(proc.Started) >= s.spec.Restart.ResetAfter {
				failures = 0
			}
		} else if ctx.Err() != nil {
			s.setState(StateStopped, nil, nil)
			return
		}
		failures++
		s.logger.Error("plugin failed", "error", err, "failures", failures)
		if IsPermanent(err) || failures >= s.spec.Restart.MaxFailures {
			s.setState(StateFailed, nil, err)
			s.logger.Error("plugin left failed", "error", err)
			select {
			case <-ctx.Done():
				s.setState(StateStopped, nil, nil)
				return
			case <-s.restartCh:
				failures = 0
				continue
			}
		}
		delay := backoff(s.spec.Restart, failures)
		s.setState(StateBackoff, nil, err)
		select {
		case <-ctx.Done():
			s.setState(StateStopped, nil, nil)
			return
		case <-time.After(delay):
		case <-s.restartCh:
		}
	}
}

func backoff(p RestartPolicy, failures int) time.Duration {
	d := p.InitialDelay
	for i := 1; i < failures && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.MaxDelay)
}

// start launches the process and runs the lifecycle.
func (s *Supervisor) start(ctx context.Context) (*Process, error) {
	proc, err := Launch(ctx, s.spec, s.launcher, s.logger)
	if err != nil {
		return nil, err
	}
	if err := s.life.Setup(ctx, s.spec, proc); err != nil {
		s.life.Teardown(s.spec, proc)
		proc.Kill()
		return nil, err
	}
	return proc, nil
}

// Kill ends the process (gracefully if it answers, else SIGKILL).
func (p *Process) Kill() { p.plugin.Kill() }

// Launch starts spec's binary, completes the go-plugin handshake and checks
// that the plugin is the kind and type the config asks for. The caller
// owns the process and must Kill it.
func Launch(ctx context.Context, spec Spec, launcher *Launcher, logger hclog.Logger) (*Process, error) {
	spec.applyDefaults()
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  pluginrpc.Handshake,
		VersionedPlugins: pluginrpc.HostPlugins(),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     spec.StartTimeout,
		Logger:           logger,
	}
	if spec.SHA256 != "" {
		sum, err := hex.DecodeString(spec.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return nil, Permanent(fmt.Errorf("plugin %s: sha256 %q is not 64 hex digits", spec.Name, spec.SHA256))
		}
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	cmd := exec.Command(spec.Path)
	cmd.Env = append([]string(nil), spec.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if spec.Credential != nil {
		cred := *spec.Credential
		cmd.SysProcAttr.Credential = &cred
		if err := setAmbientCaps(cmd.SysProcAttr, spec.AmbientCaps); err != nil {
			return nil, Permanent(fmt.Errorf("plugin %s: %w", spec.Name, err))
		}
		// go-plugin's sockets are owner-only; the plugin's group must be
		// able to connect to the host's broker socket (host services).
		// AutoMTLS still keeps anyone else in that group out.
		cfg.UnixSocketConfig = &plugin.UnixSocketConfig{Group: strconv.FormatUint(uint64(cred.Gid), 10)}
	}
	cfg.Cmd = cmd
	client := plugin.NewClient(cfg)

	var rpc plugin.ClientProtocol
	var err error
	launcher.Do(func() { rpc, err = client.Client() })
	if err != nil {
		client.Kill()
		return nil, launchError(spec, err)
	}
	raw, err := rpc.Dispense(spec.Kind)
	if err != nil {
		client.Kill()
		return nil, Permanent(fmt.Errorf("plugin %s: dispense %s: %w", spec.Name, spec.Kind, err))
	}
	kc, ok := raw.(baserpc.KindClient)
	if !ok {
		client.Kill()
		return nil, Permanent(fmt.Errorf("plugin %s: kind %q has no host client", spec.Name, spec.Kind))
	}
	proc := &Process{Client: kc, Started: time.Now(), plugin: client}
	if rc := client.ReattachConfig(); rc != nil {
		proc.Pid = rc.Pid
	}
	ictx, cancel := context.WithTimeout(ctx, spec.StartTimeout)
	defer cancel()
	info, err := kc.Base().Info(ictx)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("plugin %s (%s): %w", spec.Name, spec.Path, err)
	}
	if info.Kind != spec.Kind || info.Type != spec.Type {
		client.Kill()
		return nil, Permanent(fmt.Errorf("plugin %s: %s is a %s %q plugin, the config asks for %s %q",
			spec.Name, spec.Path, info.Kind, info.Type, spec.Kind, spec.Type))
	}
	proc.Info = info
	return proc, nil
}

// launchError explains the go-plugin failures an admin will meet.
func launchError(spec Spec, err error) error {
	msg := err.Error()
	lower := strings.ToLower(msg)
	foreign, isForeign := foreignLine(msg)
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		return Permanent(fmt.Errorf("plugin %s: %s does not match its sha256 %s: refusing to run it", spec.Name, spec.Path, spec.SHA256))
	case errors.Is(err, plugin.ErrSecureConfigNoChecksum), errors.Is(err, plugin.ErrSecureConfigNoHash):
		return Permanent(fmt.Errorf("plugin %s: %w", spec.Name, err))
	case errors.Is(err, syscall.ENOENT), errors.Is(err, exec.ErrNotFound):
		return Permanent(fmt.Errorf("plugin %s: binary %s not found (run `make build`, or set source = \"...\")", spec.Name, spec.Path))
	case errors.Is(err, syscall.EACCES):
		return Permanent(fmt.Errorf("plugin %s: binary %s is not executable", spec.Name, spec.Path))
	case strings.Contains(lower, "incompatible api version"), strings.Contains(lower, "incompatible core api version"):
		return Permanent(fmt.Errorf("plugin %s: %s speaks another plugin protocol than this host (DLS protocol %d): rebuild it against this sdk/: %w",
			spec.Name, spec.Path, base.ProtocolVersion, err))
	case isForeign:
		// It printed something else where a plugin's first line is the
		// handshake: another program, which no restart makes a plugin.
		return Permanent(fmt.Errorf("plugin %s: %s is not a DLS plugin: its first line on stdout is %q, not the go-plugin handshake", spec.Name, spec.Path, foreign))
	case strings.Contains(msg, "Unrecognized remote plugin message"), strings.Contains(msg, "plugin exited before we could connect"),
		strings.Contains(msg, "timeout while waiting for plugin"):
		// Silent exit or silence: a plugin crashing at start looks the
		// same, and a restart may help (backoff and max_failures apply).
		return fmt.Errorf("plugin %s: %s is not a DLS plugin (protocol %d) or failed during start: %w", spec.Name, spec.Path, base.ProtocolVersion, err)
	}
	return fmt.Errorf("plugin %s: start %s: %w", spec.Name, spec.Path, err)
}

// foreignLine returns the line a binary printed instead of the go-plugin
// handshake, from go-plugin's error; ok is false when there was none (the
// binary exited or closed stdout without a word, which a crashing plugin
// does too).
func foreignLine(msg string) (line string, ok bool) {
	const prefix = "Unrecognized remote plugin message: "
	_, rest, found := strings.Cut(msg, prefix)
	if !found || strings.Contains(rest, "Failed to read any lines") {
		return "", false
	}
	line, _, _ = strings.Cut(rest, "\n")
	line = strings.TrimSpace(line)
	return line, line != ""
}

// watch returns when the process exits, hangs, ctx ends, or a restart is
// asked for (restartNow).
func (s *Supervisor) watch(ctx context.Context, p *Process) (err error, restartNow bool) {
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	health := time.NewTicker(s.spec.HealthInterval)
	defer health.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return nil, false
		case <-s.restartCh:
			return nil, true
		case <-poll.C:
			if p.plugin.Exited() {
				return fmt.Errorf("plugin %s: process %d exited", s.spec.Name, p.Pid), false
			}
		case <-health.C:
			hctx, cancel := context.WithTimeout(ctx, s.spec.HealthTimeout)
			herr := p.Base().Health(hctx)
			cancel()
			result := "ok"
			if herr != nil {
				result = "fail"
				failed++
				s.logger.Warn("health check failed", "error", herr, "in_a_row", failed)
			} else {
				failed = 0
			}
			if s.metrics != nil {
				s.metrics.HealthChecks.WithLabelValues(result).Inc()
			}
			s.mu.Lock()
			s.healthy = herr == nil
			s.mu.Unlock()
			if failed >= s.spec.HealthFailures {
				return fmt.Errorf("plugin %s: %d health checks failed in a row, last: %w", s.spec.Name, failed, herr), false
			}
		}
	}
}

// stop drains the plugin within the grace period, then kills it. It is
// called when ctx has ended (or on a restart), so the drain runs under
// ctx's values without its cancellation.
func (s *Supervisor) stop(ctx context.Context, p *Process) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.spec.StopGrace+time.Second)
	defer cancel()
	if err := p.Base().Stop(ctx, s.spec.StopGrace); err != nil {
		s.logger.Warn("plugin did not drain cleanly", "error", err)
	}
	p.plugin.Kill()
}
