package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hakit/hakit/fence"
)

// ErrAdmin is matched by the error of an admin request that a member
// answered with a failure status (an *AdminError).
var ErrAdmin = errors.New("hamirror: admin request refused")

// AdminError is a failure status from a member's admin endpoint.
type AdminError struct {
	Command string // "switchover", "pause", ...
	URL     string // the member's API
	Status  int    // the HTTP status: 401 wrong token, 409 not applicable, 503 busy or no leader
	Reason  string // the member's explanation
}

// Error names the command, the member, the status and the reason.
func (e *AdminError) Error() string {
	return fmt.Sprintf("%v: %s at %s: %d %s: %s", ErrAdmin, e.Command, e.URL, e.Status, http.StatusText(e.Status), e.Reason)
}

// Unwrap returns ErrAdmin.
func (e *AdminError) Unwrap() error { return ErrAdmin }

// adminClient talks to members' HTTP APIs: the operator commands use it,
// and so does the daemon to forward a command to the active member.
type adminClient struct {
	http  *http.Client
	token string // bearer token of the POSTs; never logged or printed
}

// post sends POST base/command[?to=to] with the bearer token.
func (a *adminClient) post(ctx context.Context, base, command, to string) error {
	q := url.Values{}
	if to != "" {
		q.Set("to", to)
	}
	return a.postQuery(ctx, base, command, q)
}

// postQuery sends POST base/command?q with the bearer token.
func (a *adminClient) postQuery(ctx context.Context, base, command string, q url.Values) error {
	u := strings.TrimSuffix(base, "/") + "/" + command
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("hamirror: %s: %w", command, err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("hamirror: %s at %s: %w", command, base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return &AdminError{Command: command, URL: base, Status: resp.StatusCode, Reason: strings.TrimSpace(string(body))}
	}
	return nil
}

// getJSON fetches base/path into v.
func (a *adminClient) getJSON(ctx context.Context, base, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// memberStatus is the part of ha.Status that the status table shows,
// decoded from a member's /status.
type memberStatus struct {
	ID     string      `json:"id"`
	Role   string      `json:"role"`
	Token  fence.Token `json:"token"`
	Leader struct {
		ID    string
		Token fence.Token
	} `json:"leader"`
	Healthy bool   `json:"healthy"`
	Paused  bool   `json:"paused"`
	LastErr string `json:"last_error"`
}

// replicationStatus is a member's /replication: its Stream's counters.
type replicationStatus struct {
	Active         bool        `json:"active"`
	Records        uint64      `json:"records"`
	Checkpoints    uint64      `json:"checkpoints"`
	LagSeconds     float64     `json:"lag_seconds"`
	LastCheckpoint string      `json:"last_checkpoint,omitempty"`
	SinkToken      fence.Token `json:"sink_token"`
}
