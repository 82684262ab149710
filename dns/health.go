package dns

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// Roles reported by Health and passed to Exec commands.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

// Health is an http.Handler for a load balancer's health check (a cloud
// load balancer, HAProxy, keepalived): it answers 200 while this member is
// promoted and 503 otherwise, with a JSON body such as
//
//	{"role":"active","token":"7","since":"2026-01-02T15:04:05Z"}
//
// where token is the term's fencing token ("0" before any term) and since
// is when the role last changed. HEAD gets the status without a body.
//
// Health is itself a Switcher: Promote and Demote flip the answer. It
// remembers the highest token it has seen and refuses an older one with
// an error matching fence.ErrStale, so a late Promote from an ended term
// cannot turn the check green again. Demote(t) with a current token makes
// the member standby whatever term promoted it, since that term is then t
// or an older one and over either way.
//
// Health is also a TermSwitcher, and ha.Node promotes it with the term
// (PromoteTerm). It then decides every answer at the moment it gives it:
// once the term's Done has closed or its Deadline has passed on Now, it
// answers 503 "standby", even if this process was frozen past the
// deadline and has not been demoted yet. Promoted with Promote (a token
// alone) it can only say what it was told.
//
// Health does not check that the work is running. The zero value is
// standby and ready to use; it is safe for concurrent use.
type Health struct {
	// Now reads the clock the elector runs on: it stamps role changes,
	// and a term's Deadline is compared with it when Health answers. Nil
	// means time.Now.
	Now func() time.Time

	guard fence.Guard
	mu    sync.Mutex
	state HealthStatus
	term  lease.Term // the term of an active state promoted by PromoteTerm
}

var _ TermSwitcher = (*Health)(nil)

// HealthStatus is the body Health serves.
type HealthStatus struct {
	Role  string      `json:"role"`
	Token fence.Token `json:"token"`
	Since time.Time   `json:"since"`
}

// Status returns what the handler would answer now: standby, whatever it
// was told, once the term it was promoted for (PromoteTerm) has ended or
// passed its deadline; Since is then that deadline, or now if the term
// ended earlier.
func (h *Health) Status() HealthStatus {
	h.mu.Lock()
	st, term := h.state, h.term
	h.mu.Unlock()
	if st.Role == "" {
		return HealthStatus{Role: RoleStandby}
	}
	if st.Role == RoleActive && term != nil {
		if now := h.now(); !lease.Valid(term, now) {
			since := now
			if d := term.Deadline(); d.Before(now) {
				since = d
			}
			return HealthStatus{Role: RoleStandby, Token: st.Token, Since: since.UTC()}
		}
	}
	return st
}

// Promote makes the handler answer 200 for the term with token t, until
// Demote. It fails with fence.ErrStale if a newer token was seen, and with
// ctx.Err() if ctx is done, without changing anything.
func (h *Health) Promote(ctx context.Context, t fence.Token) error {
	return h.set(ctx, t, RoleActive, nil)
}

// PromoteTerm makes the handler answer 200 for term while lease.Valid
// holds for it on Now, until Demote. Its errors are Promote's.
func (h *Health) PromoteTerm(ctx context.Context, term lease.Term) error {
	return h.set(ctx, term.Token(), RoleActive, term)
}

// Demote makes the handler answer 503. It fails with fence.ErrStale if a
// newer token than t was seen, and with ctx.Err() if ctx is done, without
// changing anything.
func (h *Health) Demote(ctx context.Context, t fence.Token) error {
	return h.set(ctx, t, RoleStandby, nil)
}

func (h *Health) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Health) set(ctx context.Context, t fence.Token, role string, term lease.Term) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Admit under the lock: the guard's order and the state's order agree.
	if err := h.guard.Admit(t); err != nil {
		return err
	}
	h.term = term
	cur := h.state.Role
	if cur == "" {
		cur = RoleStandby
	}
	if cur == role && !h.state.Since.IsZero() {
		h.state.Token = t // same role: since keeps the time of the change
		return nil
	}
	h.state = HealthStatus{Role: role, Token: t, Since: h.now().UTC()}
	return nil
}

// String names the switcher in Multi's errors.
func (h *Health) String() string { return "health" }

// ServeHTTP answers GET and HEAD; other methods get 405.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := h.Status()
	code := http.StatusServiceUnavailable
	if st.Role == RoleActive {
		code = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(st) // the client went away; nothing to do
}
