package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// connFlags are the flags every operator command shares: where the
// members' APIs are and how to authenticate.
type connFlags struct {
	config    string
	members   string
	tokenFile string
	ca        string
	timeout   time.Duration
}

func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "read members, tls.ca and admin_token_file from this daemon config `file`")
	fs.StringVar(&f.members, "members", "", "`ID=URL,...` of the members' APIs (instead of -config)")
	fs.StringVar(&f.tokenFile, "token-file", "", "admin bearer token `file` (default: admin_token_file of -config, else $"+EnvAdminToken+")")
	fs.StringVar(&f.ca, "ca", "", "CA bundle `file` that verifies https APIs (default: tls.ca of -config)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "time limit of the command, retries of a busy member included")
}

// target is one member's API.
type target struct{ id, api string }

// resolve returns the members, sorted by ID, and the admin client.
func (f *connFlags) resolve() ([]target, *adminClient, error) {
	var members []target
	tokenFile, caFile := f.tokenFile, f.ca
	if f.config != "" {
		c, err := LoadConfig(f.config)
		if err != nil {
			return nil, nil, err
		}
		for _, id := range c.memberIDs() {
			members = append(members, target{id, c.Members[id].API})
		}
		if tokenFile == "" {
			tokenFile = c.AdminTokenFile
		}
		if caFile == "" && c.TLS != nil {
			caFile = c.TLS.CA
		}
	}
	if f.members != "" {
		ms, err := parseMembers(f.members)
		if err != nil {
			return nil, nil, err
		}
		members = ms
	}
	if len(members) == 0 {
		return nil, nil, fmt.Errorf("hamirror: name the members with -config or -members")
	}
	token, err := adminToken(tokenFile)
	if err != nil {
		return nil, nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		tlsc, err := clientTLS("ca", &TLSFiles{CA: caFile})
		if err != nil {
			return nil, nil, err
		}
		tr.TLSClientConfig = tlsc
	}
	return members, &adminClient{http: &http.Client{Transport: tr}, token: token}, nil
}

// parseMembers parses "a=http://h1:8080,b=http://h2:8080".
func parseMembers(s string) ([]target, error) {
	var out []target
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		id, api, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || id == "" || !strings.Contains(api, "://") {
			return nil, fmt.Errorf("hamirror: -members: %q is not ID=URL", kv)
		}
		if seen[id] {
			return nil, fmt.Errorf("hamirror: -members: member %q named twice", id)
		}
		seen[id] = true
		out = append(out, target{id, api})
	}
	slices.SortFunc(out, func(a, b target) int { return cmp.Compare(a.id, b.id) })
	return out, nil
}

// statusTimeout bounds how long status waits for a member's answers.
const statusTimeout = 3 * time.Second

// memberRow is one line of the status table.
type memberRow struct {
	target
	st     memberStatus
	repl   replicationStatus
	hasRep bool // the member served /replication (a hamirror, not a bare ha.Node)
	err    error
}

// cmdStatus prints a table of every member, asking all at once. It
// fails (exit 1) if no member answered or if more than one claims to be
// active, which would mean a broken election, and says so.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hamirror status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	members, admin, err := cf.resolve()
	if err != nil {
		return err
	}
	// A member that hangs (a stopped process, a partition) must not hold
	// up the table: each gets at most statusTimeout.
	ctx, cancel := context.WithTimeout(ctx, min(cf.timeout, statusTimeout))
	defer cancel()
	rows := queryMembers(ctx, admin, members)
	return printStatus(stdout, rows)
}

func queryMembers(ctx context.Context, admin *adminClient, members []target) []memberRow {
	rows := make([]memberRow, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			r := memberRow{target: m}
			r.err = admin.getJSON(ctx, m.api, "/status", &r.st)
			if r.err == nil {
				// /replication is hamirror's own; a bare ha.Node lacks it.
				r.hasRep = admin.getJSON(ctx, m.api, "/replication", &r.repl) == nil
			}
			rows[i] = r
		})
	}
	wg.Wait()
	return rows
}

func printStatus(w io.Writer, rows []memberRow) error {
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tTOKEN\tLEADER\tLAG\tRECORDS\tHEALTH\tNOTE")
	answered, active := 0, 0
	for _, r := range rows {
		if r.err != nil {
			row(tw, r.id, "unreachable", "-", "-", "-", "-", "-", r.err.Error())
			continue
		}
		answered++
		lag, records := "-", "-"
		if r.st.Role == "active" {
			active++
		}
		if r.hasRep {
			records = fmt.Sprint(r.repl.Records)
			if r.repl.Active {
				lag = fmt.Sprintf("%.3fs", r.repl.LagSeconds)
			}
		}
		health := "ok"
		if !r.st.Healthy {
			health = "failing"
		}
		leader := "-"
		if r.st.Leader.ID != "" {
			leader = fmt.Sprintf("%s (%s)", r.st.Leader.ID, r.st.Leader.Token)
		}
		var notes []string
		if r.st.Paused {
			notes = append(notes, "paused")
		}
		if r.st.LastErr != "" {
			notes = append(notes, "last error: "+r.st.LastErr)
		}
		row(tw, r.id, r.st.Role, r.st.Token.String(), leader, lag, records, health, strings.Join(notes, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Drop the padding after an empty last cell.
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		if body, nl := strings.CutSuffix(l, "\n"); nl {
			if _, err := fmt.Fprintln(w, strings.TrimRight(body, " ")); err != nil {
				return err
			}
		}
	}
	switch {
	case answered == 0:
		return errors.New("hamirror: status: no member answered")
	case active > 1:
		return fmt.Errorf("hamirror: status: %d members claim to be active", active)
	}
	return nil
}

// row writes one table row.
func row(w io.Writer, cells ...string) { fmt.Fprintln(w, strings.Join(cells, "\t")) }

// cmdAdmin sends switchover, pause, resume or approve. Any member will
// do for the first three (a standby forwards to the active member), so
// they are tried in order until one answers; approve goes to the member
// named by -member, since approval is that member's own.
func cmdAdmin(ctx context.Context, command string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hamirror "+command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connFlags
	cf.register(fs)
	var to, member string
	switch command {
	case "switchover":
		fs.StringVar(&to, "to", "", "the successor's member `ID` (default: any healthy member)")
	case "approve":
		fs.StringVar(&member, "member", "", "the member `ID` to approve (required)")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if command == "approve" && member == "" {
		fmt.Fprintln(stderr, "hamirror approve: -member is required")
		return errUsage
	}
	members, admin, err := cf.resolve()
	if err != nil {
		return err
	}
	if admin.token == "" {
		return fmt.Errorf("hamirror: %s needs the admin token (-token-file, admin_token_file or $%s)", command, EnvAdminToken)
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	if member != "" {
		i := slices.IndexFunc(members, func(t target) bool { return t.id == member })
		if i < 0 {
			return fmt.Errorf("hamirror: approve: member %q is not among the members", member)
		}
		members = members[i : i+1]
	}
	var errs []error
	for _, m := range members {
		err := postRetryBusy(ctx, admin, m.api, command, to)
		if err == nil {
			fmt.Fprintf(stdout, "%s: done (sent to %s)\n", command, m.id)
			return nil
		}
		errs = append(errs, err)
		// A member that answered decided; only an unreachable one is
		// skipped, or the command could be applied twice.
		if errors.Is(err, ErrAdmin) || ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// postRetryBusy posts, and posts again every 200 ms while the member
// answers 503 (a transition in progress, or no leader yet), until ctx
// ends.
func postRetryBusy(ctx context.Context, admin *adminClient, api, command, to string) error {
	for {
		err := admin.post(ctx, api, command, to)
		var ae *AdminError
		if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			return err
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}
