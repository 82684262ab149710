package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hakit/hakit/lease/raftlease"
)

// raftMembers is what the membership endpoints need of the Raft group.
type raftMembers interface {
	AddMember(ctx context.Context, id, addr string) error
	RemoveMember(ctx context.Context, id string) error
}

// membershipHandler serves POST /raft/remove?id=ID and POST
// /raft/add?id=ID&addr=HOST:PORT with the admin token: the steps of
// replacing a member's disk. Only the Raft leader changes the membership;
// another member answers 503 naming the leader, and "hamirror member"
// tries the next.
func membershipHandler(g raftMembers, token string) http.Handler {
	mux := http.NewServeMux()
	serve := func(do func(r *http.Request, id string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				http.Error(w, "admin token required", http.StatusUnauthorized)
				return
			}
			id := r.URL.Query().Get("id")
			if id == "" {
				http.Error(w, "id is required", http.StatusBadRequest)
				return
			}
			if err := do(r, id); err != nil {
				status := http.StatusConflict
				if errors.Is(err, raftlease.ErrNotLeader) {
					status = http.StatusServiceUnavailable
				}
				http.Error(w, err.Error(), status)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.Handle("POST /raft/remove", serve(func(r *http.Request, id string) error { return g.RemoveMember(r.Context(), id) }))
	mux.Handle("POST /raft/add", serve(func(r *http.Request, id string) error {
		addr := r.URL.Query().Get("addr")
		if addr == "" {
			return errors.New("addr is required")
		}
		return g.AddMember(r.Context(), id, addr)
	}))
	return mux
}

// cmdMember runs "hamirror member remove|add": it asks each member in
// turn until the Raft leader makes the change.
func cmdMember(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "remove" && args[0] != "add") {
		fmt.Fprintln(stderr, "usage: hamirror member remove -id ID [conn flags] | hamirror member add -id ID -raft HOST:PORT [conn flags]")
		return errUsage
	}
	op := args[0]
	fs := flag.NewFlagSet("hamirror member "+op, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connFlags
	cf.register(fs)
	id := fs.String("id", "", "the member `ID` (required)")
	raft := fs.String("raft", "", "the member's Raft `address` host:port (add: required)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *id == "" || (op == "add" && *raft == "") {
		fmt.Fprintf(stderr, "hamirror member %s: -id%s required\n", op, map[bool]string{true: " and -raft are", false: " is"}[op == "add"])
		return errUsage
	}
	members, admin, err := cf.resolve()
	if err != nil {
		return err
	}
	if admin.token == "" {
		return fmt.Errorf("hamirror: member %s needs the admin token (-token-file, admin_token_file or $%s)", op, EnvAdminToken)
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	q := url.Values{"id": {*id}}
	if op == "add" {
		q.Set("addr", *raft)
	}
	var errs []error
	for _, m := range members {
		err := admin.postQuery(ctx, m.api, "raft/"+op, q)
		if err == nil {
			fmt.Fprintf(stdout, "member %s %s: done (by %s)\n", op, *id, m.id)
			return nil
		}
		errs = append(errs, err)
		var ae *AdminError
		if errors.As(err, &ae) && ae.Status != http.StatusServiceUnavailable {
			break // the leader answered: it decided
		}
	}
	return errors.Join(errs...)
}
