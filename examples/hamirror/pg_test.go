//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate/sqlsink"
)

// postgresBin returns the directory holding initdb and pg_ctl: PATH
// first, then Debian's versioned directories.
func postgresBin() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- { // Glob sorts; the newest is last for same-width versions
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// startPostgres starts a private PostgreSQL server on a loopback port,
// with TLS, and returns the DSN (sslmode=verify-full) of its database.
// As root, the server runs as the "postgres" user, since PostgreSQL
// refuses to run as root. It is stopped at cleanup.
func startPostgres(t *testing.T) string {
	t.Helper()
	bin := postgresBin()
	if bin == "" {
		msg := "PostgreSQL server programs (initdb, pg_ctl) not found; install them: apt-get install -y postgresql"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Not t.TempDir: the server's user must be able to enter it.
	dir, err := os.MkdirTemp("", "hamirror-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pki := writeTestPKI(t, dir)
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and no %q user to run PostgreSQL as: %v", "postgres", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{dir, pki.Cert, pki.Key} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	pg := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "LC_ALL=C")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, log)
		}
	}
	data := filepath.Join(dir, "data")
	pg("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	port := addr[strings.LastIndex(addr, ":")+1:]
	pg("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "-o",
		fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%s -c unix_socket_directories=%s -c fsync=off -c ssl=on -c ssl_cert_file=%s -c ssl_key_file=%s",
			port, dir, pki.Cert, pki.Key), "start")
	t.Cleanup(func() { pg("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop") })
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=verify-full&sslrootcert=%s", port, pki.CA)
}

// sqlTarget reads the records of stream from the SQL sink's default
// record table, in position order.
func sqlTarget(t *testing.T, dsn, stream string) targetReader {
	db, err := sqlsink.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return func() ([][]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rows, err := db.QueryContext(ctx, `SELECT data FROM `+sqlsink.DefaultRecordTable+` WHERE stream = $1 ORDER BY pos`, stream)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out [][]byte
		for rows.Next() {
			var d []byte
			if err := rows.Scan(&d); err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, rows.Err()
	}
}

// TestDaemonPostgres replicates into PostgreSQL through the SQL sink
// (exactly once: records, position and token in one transaction) across
// a graceful failover.
func TestDaemonPostgres(t *testing.T) {
	dsn := startPostgres(t)
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgs := daemonConfigs(t, 3, "raft", nil)
	for _, c := range cfgs {
		c.Sink = SinkConfig{Postgres: &PostgresConfig{DSNFile: dsnFile}}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	testDaemonFailover(t, cfgs, "", sqlTarget(t, dsn, DefaultSQLStream))
}
