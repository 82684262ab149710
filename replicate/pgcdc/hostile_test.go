package pgcdc

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeWalsender is a server that speaks just enough of the protocol to
// start a replication stream (no TLS, no password: the test connects
// with sslmode=disable), then sends raw bytes and reads what comes until the client says goodbye.
// A hostile or broken peer is what it stands for: a real server cannot be
// made to send a bad length field.
func fakeWalsender(t *testing.T, stream []byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		// Later connections are cancel requests of a closing client:
		// closed at once, so that it does not wait for an answer.
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		be := pgproto3.NewBackend(conn, conn)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			return
		}
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if err := be.Flush(); err != nil {
			return
		}
		if _, err := be.Receive(); err != nil { // START_REPLICATION
			return
		}
		be.Send(&pgproto3.CopyBothResponse{})
		if err := be.Flush(); err != nil {
			return
		}
		if _, err := conn.Write(stream); err != nil {
			return
		}
		for { // status updates, until the client says goodbye
			m, err := be.Receive()
			if _, bye := m.(*pgproto3.Terminate); err != nil || bye {
				return
			}
		}
	}()
	return l.Addr().String()
}

// A peer that announces a message far bigger than any transaction the
// source accepts makes the stream fail at once, with ErrTransactionTooLarge,
// instead of allocating what the length field says and waiting for it.
func TestHostileMessageLength(t *testing.T) {
	msg := []byte{'d'}
	msg = binary.BigEndian.AppendUint32(msg, 256<<20) // 256 MiB announced, 1 byte sent
	msg = append(msg, 'w')
	addr := fakeWalsender(t, msg)
	s, err := New(Config{ConnString: "postgres://cdc@" + addr + "/app?sslmode=disable&connect_timeout=5", Slot: "s", Publication: "p",
		MaxTransactionBytes: 1 << 20, StatusInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	repl, err := s.connectReplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(ctx)
	c := &cursor{s: s, repl: repl, stats: &s.stats, startLSN: 0x100}
	if err := c.startReplication(ctx); err != nil {
		t.Fatal(err)
	}
	r := &receiver{c: c, dec: newDecoder(s.cfg.MaxTransactionBytes), every: s.cfg.StatusInterval, received: 0x100, lastLSN: 0x100, lastQueued: time.Now()}
	err = r.run(ctx)
	if !errors.Is(err, ErrTransactionTooLarge) {
		t.Fatalf("stream ended with %v, want ErrTransactionTooLarge for a 256 MiB message under a 1 MiB bound", err)
	}
	t.Log(err)
}
