// Command hamirror is hakit's reference daemon: it mirrors an append-only
// file log (package replicate/filelog) into a transactional file sink
// (replicate/filesink) or a PostgreSQL table (replicate/sqlsink) with
// single-active high availability. Run it on
// three hosts; exactly one replicates, and when it dies, hangs or is cut
// off another resumes exactly where it stopped.
//
// Usage:
//
//	hamirror demo                      three members in one process, a failover and a switchover, verified
//	hamirror run -config hamirror.json run one member
//	hamirror status     [conn flags]   a table of every member: role, token, leader, lag, health
//	hamirror switchover [conn flags] [-to ID]
//	hamirror pause      [conn flags]   maintenance mode on (cluster-wide)
//	hamirror resume     [conn flags]   maintenance mode off
//	hamirror approve    [conn flags] -member ID
//	hamirror certs      -dir DIR -members a=10.0.0.1,b=10.0.0.2,c=10.0.0.3
//	hamirror member     remove -id ID | add -id ID -raft HOST:PORT [conn flags]
//
// The configuration file is JSON; see Config and hamirror.json in this
// directory. The operator commands read the members' API addresses and
// the admin token from the same file (-config), or take -members and
// $HAMIRROR_ADMIN_TOKEN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: hamirror <command> [flags]

commands:
  demo        three members in one process on loopback: failover, switchover, verification
  run         run one member (-config FILE)
  status      show every member's role, token, leader, lag and health
  switchover  hand the active role over (-to ID names the successor)
  pause       maintenance mode on: no failover, no step-down
  resume      maintenance mode off
  approve     let a member configured with require_approval take over once (-member ID)
  certs       write a Raft CA and member certificates for raft.tls (-dir DIR -members a=HOST,b=HOST,...)
  member      change the Raft membership: "member remove -id ID", "member add -id ID -raft HOST:PORT"

"hamirror <command> -h" lists the command's flags.
`

// runMain runs one command and returns the process exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "status":
		err = cmdStatus(ctx, rest, stdout, stderr)
	case "switchover", "pause", "resume", "approve":
		err = cmdAdmin(ctx, cmd, rest, stdout, stderr)
	case "certs":
		err = cmdCerts(rest, stdout, stderr)
	case "member":
		err = cmdMember(ctx, rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hamirror: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, err)
	return 1
}

// errUsage marks a command-line error already reported by the flag set.
var errUsage = errors.New("hamirror: usage")

// cmdRun runs one member until SIGTERM or SIGINT.
func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("hamirror run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the JSON configuration `file` (required)")
	id := fs.String("id", "", "override id")
	listen := fs.String("listen", "", "override listen (host:port of the HTTP API)")
	dataDir := fs.String("data-dir", "", "override raft.data_dir")
	logFormat := fs.String("log-format", "", "override log.format (json or text)")
	logLevel := fs.String("log-level", "", "override log.level (debug, info, warn, error)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fmt.Fprintln(stderr, "hamirror run: -config is required")
		fs.Usage()
		return errUsage
	}
	c, err := LoadConfig(*path)
	if err != nil {
		return err
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{{*id, &c.ID}, {*listen, &c.Listen}, {*dataDir, &c.Raft.DataDir}, {*logFormat, &c.Log.Format}, {*logLevel, &c.Log.Level}} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("config file %s:\n%w", *path, err)
	}
	logger := newLogger(c.Log, os.Stderr)
	d, err := newDaemon(ctx, c, logger)
	if err != nil {
		return err
	}
	return d.run(ctx)
}

// parseFlags parses args and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}
