package pgcdc

import (
	"context"
	"net"
	"time"
)

// The walsender sends every change as a message of its own and flushes
// it, so a reader that keeps up gets one small TCP segment per read: a
// system call, a poller wake-up and a TLS record per change, which costs
// more CPU than decoding it. After a small read, coalescingConn waits a
// moment before the next one, so that the kernel gathers what the server
// sends meanwhile into one read. It adds at most coalesceDelay of latency
// per read while the stream is busy, and none when it is idle (a read
// that waits for data returns a full segment or blocks as usual).
const (
	coalesceDelay = 500 * time.Microsecond
	coalesceBelow = 4 << 10 // bytes: a read smaller than this is small
)

type coalescingConn struct {
	net.Conn
	small bool
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	if c.small {
		time.Sleep(coalesceDelay)
	}
	n, err := c.Conn.Read(p)
	c.small = n > 0 && n < coalesceBelow && n < len(p)
	return n, err
}

// dialCoalescing is a pgconn DialFunc whose connections coalesce reads.
func dialCoalescing(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &coalescingConn{Conn: c}, nil
}
