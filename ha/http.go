package ha

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/hakit/hakit/lease"
)

// Handler returns the Node's HTTP interface. It never listens by itself;
// mount it on a server of your own (with TLS).
//
//	GET  /health      200 while the Node runs (a liveness probe)
//	GET  /primary     200 while active, else 503 (for a load balancer)
//	GET  /standby     200 while running and not active, else 503
//	GET  /status      the Status as JSON (see Status)
//	POST /switchover  hand over; ?to=ID names the successor
//	POST /pause       maintenance mode on
//	POST /resume      maintenance mode off
//	POST /approve     approve the next takeover (RequireApproval)
//
// /primary, /standby and /status decide the role when they answer, from
// the term's Done and Deadline (see Status): a member frozen past its
// deadline answers 503 on /primary as soon as it runs again.
//
// The POST endpoints require "Authorization: Bearer <Config.AdminToken>";
// a request without the right token gets 401 and changes nothing, and with
// no AdminToken configured every admin request is refused.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		running := n.running
		n.mu.Unlock()
		roleReply(w, running, "running")
	})
	mux.HandleFunc("GET /primary", func(w http.ResponseWriter, r *http.Request) {
		s := n.Status()
		roleReply(w, s.Role == RoleActive, s.Role.String())
	})
	mux.HandleFunc("GET /standby", func(w http.ResponseWriter, r *http.Request) {
		s := n.Status()
		roleReply(w, s.Role != RoleActive && s.Role != RoleStopped && n.isRunning(), s.Role.String())
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(n.Status())
	})
	admin := func(f func(r *http.Request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !n.authorized(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hakit"`)
				http.Error(w, "ha: missing or wrong bearer token", http.StatusUnauthorized)
				return
			}
			if err := f(r); err != nil {
				http.Error(w, err.Error(), statusOf(err))
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /switchover", admin(func(r *http.Request) error {
		return n.Switchover(r.Context(), r.URL.Query().Get("to"))
	}))
	mux.HandleFunc("POST /pause", admin(func(r *http.Request) error { return n.Pause(r.Context()) }))
	mux.HandleFunc("POST /resume", admin(func(r *http.Request) error { return n.Resume(r.Context()) }))
	mux.HandleFunc("POST /approve", admin(func(r *http.Request) error { return n.Approve(r.Context()) }))
	return mux
}

func (n *Node) isRunning() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running
}

func roleReply(w http.ResponseWriter, ok bool, role string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, role)
}

// authorized compares the bearer token in constant time.
func (n *Node) authorized(r *http.Request) bool {
	want := n.cfg.AdminToken
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return want != "" && ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotRunning), errors.Is(err, ErrBusy), errors.Is(err, lease.ErrNoLeader):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrPaused), errors.Is(err, ErrApprovalNotRequired):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// forwardHTTP is the default Config.Forward: POST /<command> to the
// leader's advertised API address, with the admin token. An address
// without a scheme gets http://. The token is sent only over https or to
// a loopback address; anything else is refused before a connection is
// made (ErrForward), since the token would cross the network in clear.
func (n *Node) forwardHTTP(ctx context.Context, leader lease.Leader, command, to string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("ha: forward %s to leader %q: "+format, append([]any{command, leader.ID}, args...)...)
	}
	if leader.Addr == "" {
		return fail("%w: it advertises no API address (set the elector's: raftlease.Config.APIAddr, etcdlease.Config.Addr)", ErrForward)
	}
	if n.cfg.AdminToken == "" {
		return fail("%w: this member has no ha.Config.AdminToken to authorize it with", ErrForward)
	}
	base := leader.Addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/" + command)
	if err != nil {
		return fail("address %q: %w", leader.Addr, err)
	}
	if err := tokenSafe(u); err != nil {
		return fail("%w: %v; advertise an https API address (raftlease.Config.APIAddr, etcdlease.Config.Addr) or set ha.Config.Forward", ErrForward, err)
	}
	if to != "" {
		u.RawQuery = "to=" + url.QueryEscape(to)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return fail("%w", err)
	}
	req.Header.Set("Authorization", "Bearer "+n.cfg.AdminToken)
	resp, err := n.cfg.AdminClient.Do(req)
	if err != nil {
		return fail("at %s: %w", leader.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fail("at %s: %s: %s", leader.Addr, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// tokenSafe says whether a bearer token may be sent to u: over https, or
// over http to a loopback address (an IP literal, or "localhost"). Names
// are not resolved: what a name resolves to can change under us.
func tokenSafe(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("the admin token goes only over https or to a loopback address, and %s is plain http to %q", u.Redacted(), host)
	default:
		return fmt.Errorf("scheme %q of %s is not http or https", u.Scheme, u.Redacted())
	}
}
