package tcp

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
	"github.com/hakit/hakit/lease/raftlease/raftcert"
)

// The attacks of issue 12 on member identity, and the checks that stop
// them. Each attacker dials the member directly and writes the wire
// format by hand, as a program that is not hakit would.

func newCA(t *testing.T) *raftcert.CA {
	t.Helper()
	ca, err := raftcert.NewCA("raftlease test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func memberTLS(t *testing.T, ca *raftcert.CA, id string) *tls.Config {
	t.Helper()
	c, err := ca.MemberConfig(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clientOf is the dialing side of cfg for a hand-written client: it does
// not check the server (the attacker does not care who answers).
func clientOf(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.InsecureSkipVerify = true
	return c
}

// attack dials addr (over TLS with cfg, if set), says hello as from to
// to, and sends m. It returns the connection and whether the handshake
// and writes went through (a refused handshake fails here or on the next
// read).
func attack(t *testing.T, addr string, cfg *tls.Config, from, to string, m *pb.Message) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if cfg != nil {
		tc := tls.Client(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return tc // refused during the handshake: fine for the caller
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
	}
	data, _ := proto.Marshal(m)
	_, _ = c.Write(appendFrame(appendFrame(nil, encodeHello(raftid.Of(from), raftid.Of(to))), data))
	return c
}

// closedByPeer reports whether the other side closed c within d.
func closedByPeer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// logBuffer collects a transport's logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestInsecureHelloIsTakenAtItsWord documents what Insecure gives up:
// without TLS the hello's claim is all there is. This is why plain TCP
// needs the explicit opt-in.
func TestInsecureHelloIsTakenAtItsWord(t *testing.T) {
	b, rb := newTCP(t, "b", nil)
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	attack(t, b.Addr().String(), nil, "a", "b", msg("a", "b", 1))
	waitCount(t, rb, 1)
}

func TestPlainRefusedWithoutInsecure(t *testing.T) {
	_, err := New(Config{ID: "a", Addr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "TCPConfig.TLS") || !strings.Contains(err.Error(), "Insecure") {
		t.Fatalf("New without TLS or Insecure = %v, want an error naming TCPConfig.TLS and Insecure", err)
	}
}

// TestTLSMembersTalk: members with certificates from the group's CA reach
// each other without IP or DNS names in their certificates.
func TestTLSMembersTalk(t *testing.T) {
	ca := newCA(t)
	a, _ := newTCP(t, "a", memberTLS(t, ca, "a"))
	b, rb := newTCP(t, "b", memberTLS(t, ca, "b"))
	a.SetPeer(raftid.Of("b"), b.Addr().String())
	b.SetPeer(raftid.Of("a"), a.Addr().String())
	a.Send(msg("a", "b", 1))
	waitCount(t, rb, 1)
}

// TestTLSOutsiderRefused: a certificate signed by the group's CA for
// another service (it names no member) cannot speak as member a.
func TestTLSOutsiderRefused(t *testing.T) {
	ca := newCA(t)
	var logs logBuffer
	b, rb := newTCPWith(t, Config{ID: "b", TLS: memberTLS(t, ca, "b"), Logger: logs.logger()})
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	other, err := ca.IssueOther("api.example.com", time.Hour, "api.example.com", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := attack(t, b.Addr().String(), clientOf(ca.Config(other)), "a", "b", msg("a", "b", 1))
	if !closedByPeer(c, 5*time.Second) {
		t.Fatal("the connection stayed open")
	}
	if n := rb.count(); n != 0 {
		t.Fatalf("%d messages from the outsider delivered", n)
	}
	eventually(t, 5*time.Second, "the refusal to be counted and logged", func() error {
		if b.Stats().Refused == 0 || !strings.Contains(logs.String(), "names no member") {
			return errors.New("not yet")
		}
		return nil
	})
}

// TestTLSOtherMemberRefused: member c's certificate cannot speak as
// member a; the refusal names both.
func TestTLSOtherMemberRefused(t *testing.T) {
	ca := newCA(t)
	var logs logBuffer
	b, rb := newTCPWith(t, Config{ID: "b", TLS: memberTLS(t, ca, "b"), Logger: logs.logger(),
		Name: func(id uint64) string { return map[uint64]string{raftid.Of("a"): "a", raftid.Of("c"): "c"}[id] }})
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	b.SetPeer(raftid.Of("c"), "127.0.0.1:2")
	c := attack(t, b.Addr().String(), clientOf(memberTLS(t, ca, "c")), "a", "b", msg("a", "b", 1))
	if !closedByPeer(c, 5*time.Second) {
		t.Fatal("the connection stayed open")
	}
	if n := rb.count(); n != 0 {
		t.Fatalf("%d messages from c posing as a delivered", n)
	}
	eventually(t, 5*time.Second, "the refusal to name both members", func() error {
		if out := logs.String(); !strings.Contains(out, `the certificate names member \"c\", the hello claims member \"a\"`) {
			return errors.New("not logged yet")
		}
		return nil
	})
	// c speaking as itself is fine.
	attack(t, b.Addr().String(), clientOf(memberTLS(t, ca, "c")), "c", "b", msg("c", "b", 1))
	waitCount(t, rb, 1)
}

// TestTLSClientWithoutCertificateRefused: a TLS client with no
// certificate, and a plain TCP client, are refused by a TLS member.
func TestTLSClientWithoutCertificateRefused(t *testing.T) {
	ca := newCA(t)
	b, rb := newTCP(t, "b", memberTLS(t, ca, "b"))
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	for _, cfg := range []*tls.Config{{RootCAs: ca.Pool(), InsecureSkipVerify: true}, nil} {
		c := attack(t, b.Addr().String(), cfg, "a", "b", msg("a", "b", 1))
		if !closedByPeer(c, 5*time.Second) {
			t.Fatal("the connection stayed open")
		}
	}
	if n := rb.count(); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
}

// TestTLSOtherCARefused: a member certificate from another CA is refused
// both ways.
func TestTLSOtherCARefused(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	b, rb := newTCP(t, "b", memberTLS(t, ca, "b"))
	x, rx := newTCP(t, "x", memberTLS(t, other, "x"))
	b.SetPeer(raftid.Of("x"), x.Addr().String())
	x.SetPeer(raftid.Of("b"), b.Addr().String())
	eventually(t, 10*time.Second, "the untrusted peer to be refused", func() error {
		x.Send(msg("x", "b", 1))
		rx.mu.Lock()
		defer rx.mu.Unlock()
		if rx.unreachable[raftid.Of("b")] == 0 {
			return errors.New("not refused yet")
		}
		return nil
	})
	if rb.count() != 0 {
		t.Fatal("a message signed by another CA was delivered")
	}
}

// TestDialerChecksMember: a member dialling b's address but reaching c
// (a stale address, a hijacked one) refuses to talk to it.
func TestDialerChecksMember(t *testing.T) {
	ca := newCA(t)
	var logs logBuffer
	a, ra := newTCPWith(t, Config{ID: "a", TLS: memberTLS(t, ca, "a"), Logger: logs.logger(),
		Name: func(id uint64) string { return map[uint64]string{raftid.Of("b"): "b"}[id] }})
	c, rc := newTCP(t, "c", memberTLS(t, ca, "c"))
	c.SetPeer(raftid.Of("a"), a.Addr().String())
	a.SetPeer(raftid.Of("b"), c.Addr().String()) // b's name, c's address
	eventually(t, 10*time.Second, "a to give up on the wrong member", func() error {
		a.Send(msg("a", "b", 1))
		ra.mu.Lock()
		defer ra.mu.Unlock()
		if ra.unreachable[raftid.Of("b")] == 0 {
			return errors.New("not refused yet")
		}
		return nil
	})
	if rc.count() != 0 {
		t.Fatal("c received a message meant for b")
	}
	if out := logs.String(); !strings.Contains(out, `dialled member \"b\" but the certificate names member \"c\"`) {
		t.Fatalf("the refusal does not name both members; logs:\n%s", out)
	}
}
