package dns

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/hakit/hakit/fence"
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
// Health says only what this process was told; it does not check that the
// work is running. The zero value is standby and ready to use; it is safe
// for concurrent use.
type Health struct {
	// Now stamps role changes; nil means time.Now.
	Now func() time.Time

	guard fence.Guard
	mu    sync.Mutex
	state HealthStatus
}

// HealthStatus is the body Health serves.
type HealthStatus struct {
	Role  string      `json:"role"`
	Token fence.Token `json:"token"`
	Since time.Time   `json:"since"`
}

// Status returns what the handler would answer now.
func (h *Health) Status() HealthStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.Role == "" {
		return HealthStatus{Role: RoleStandby}
	}
	return h.state
}

// Promote makes the handler answer 200 for the term with token t. It fails
// with fence.ErrStale if a newer token was seen, and with ctx.Err() if ctx
// is done, without changing anything.
func (h *Health) Promote(ctx context.Context, t fence.Token) error {
	return h.set(ctx, t, RoleActive)
}

// Demote makes the handler answer 503. It fails with fence.ErrStale if a
// newer token than t was seen, and with ctx.Err() if ctx is done, without
// changing anything.
func (h *Health) Demote(ctx context.Context, t fence.Token) error {
	return h.set(ctx, t, RoleStandby)
}

func (h *Health) set(ctx context.Context, t fence.Token, role string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Admit under the lock: the guard's order and the state's order agree.
	if err := h.guard.Admit(t); err != nil {
		return err
	}
	cur := h.state.Role
	if cur == "" {
		cur = RoleStandby
	}
	if cur == role && !h.state.Since.IsZero() {
		h.state.Token = t // same role: since keeps the time of the change
		return nil
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	h.state = HealthStatus{Role: role, Token: t, Since: now().UTC()}
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
