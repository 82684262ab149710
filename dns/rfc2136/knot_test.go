//go:build linux

package rfc2136

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// knot is a Knot DNS server started by a test: one zone, one TSIG key
// allowed to update it, listening on a loopback port.
type knot struct {
	Addr    string
	Zone    string
	KeyName string
	Secret  string
	cmd     *exec.Cmd
	log     *syncBuffer
}

// The secrets are test fixtures, generated for these tests only.
const (
	testKeyName     = "hakit-test."
	testSecret      = "hk3TiJzq3VR3NiNbpFqQJxS5rkiXbd1BCp+hAEUIoMw="
	otherSecret     = "Vb2Fv3W9lj0qf8nQe1yFZrYd5cqQ3JQqk1m0t4Zr7aA="
	testZone        = "hakit.test."
	knotInstallHint = "apt-get install -y knot"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// findKnotd returns knotd's path, or skips (fails under CI=true).
func findKnotd(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("knotd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/knotd", "/usr/local/sbin/knotd"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := "knotd (Knot DNS) not found in PATH or sbin; install it: " + knotInstallHint
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startKnot starts knotd in the foreground and waits until it answers an
// SOA query for the test zone. The server is killed at cleanup.
func startKnot(t testing.TB) *knot {
	t.Helper()
	bin := findKnotd(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		k, err := tryStartKnot(t, bin)
		if err == nil {
			return k
		}
		lastErr = err // most likely the free port was taken meanwhile
	}
	t.Fatal(lastErr)
	return nil
}

func tryStartKnot(t testing.TB, bin string) (*knot, error) {
	// A short directory: knotd puts its control socket in rundir, and a
	// socket path is limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "knot")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`server:
    rundir: %[1]q
    listen: 127.0.0.1@%[2]d
    user: %[3]s:%[4]s
    tcp-workers: 2
    udp-workers: 2
    background-workers: 1
database:
    storage: %[1]q
    journal-db: %[6]q
    timer-db: %[7]q
    kasp-db: %[8]q
log:
  - target: stderr
    any: info
key:
  - id: %[9]s
    algorithm: hmac-sha256
    secret: %[10]s
acl:
  - id: update
    key: %[9]s
    action: update
template:
  - id: default
    storage: %[1]q
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: %[5]s
    file: zone
    acl: update
`, dir, port, u.Username, g.Name, testZone,
		filepath.Join(dir, "journal"), filepath.Join(dir, "timer"), filepath.Join(dir, "kasp"),
		testKeyName, testSecret)
	if err := os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	zone := fmt.Sprintf("$ORIGIN %s\n$TTL 60\n@ SOA ns1 admin 1 60 60 600 60\n@ NS ns1\nns1 A 127.0.0.1\n", testZone)
	if err := os.WriteFile(filepath.Join(dir, "zone"), []byte(zone), 0o644); err != nil {
		return nil, err
	}
	k := &knot{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Zone: testZone, KeyName: testKeyName, Secret: testSecret, log: &syncBuffer{}}
	k.cmd = exec.Command(bin, "-c", filepath.Join(dir, "knot.conf"))
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start knotd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- k.cmd.Wait() }()
	stop := func() {
		_ = k.cmd.Process.Signal(syscall.SIGCONT) // in case a test stopped it
		_ = k.cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(15 * time.Second)
	c := &mdns.Client{Net: "tcp", Timeout: 500 * time.Millisecond}
	for {
		m := new(mdns.Msg)
		m.SetQuestion(testZone, mdns.TypeSOA)
		if r, _, err := c.Exchange(m, k.Addr); err == nil && r.Rcode == mdns.RcodeSuccess && r.Authoritative && len(r.Answer) == 1 {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			return nil, fmt.Errorf("knotd exited before answering (%v); its log:\n%s", err, k.log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("knotd did not answer an SOA query for %s at %s within 15s; its log:\n%s", testZone, k.Addr, k.log)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("knotd log:\n%s", k.log)
		}
	})
	return k, nil
}

// pause stops the server process (it keeps its sockets, so exchanges
// time out) until the returned function resumes it. It returns only once
// every thread of the server has stopped: a request sent afterwards is not
// processed before the resume.
func (k *knot) pause(t *testing.T) func() {
	t.Helper()
	if err := k.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !k.allThreadsStopped(t) {
		if time.Now().After(deadline) {
			t.Fatal("knotd did not stop within 10s of SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
	return func() {
		if err := k.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Error(err)
		}
	}
}

// allThreadsStopped reports whether every thread of the server is in the
// stopped state, from /proc.
func (k *knot) allThreadsStopped(t *testing.T) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", k.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("cannot see knotd's threads: %v", err)
	}
	for _, task := range tasks {
		st, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false
		}
		// The state follows the parenthesised command name.
		i := bytes.LastIndexByte(st, ')')
		if i < 0 || i+2 >= len(st) || st[i+2] != 'T' {
			return false
		}
	}
	return true
}

// freePort returns a loopback port free for both TCP and UDP just now.
func freePort() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no loopback port free for both TCP and UDP")
}

// rawUpdate sends an update signed with the test key, bypassing the
// switcher: it plays an operator editing the zone by hand.
func (k *knot) rawUpdate(t *testing.T, ctx context.Context, insert ...mdns.RR) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetUpdate(k.Zone)
	m.Insert(insert)
	m.SetTsig(k.KeyName, mdns.HmacSHA256, 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{k.KeyName: k.Secret}}
	r, _, err := c.ExchangeContext(ctx, m, k.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("raw update: %s", mdns.RcodeToString[r.Rcode])
	}
}
