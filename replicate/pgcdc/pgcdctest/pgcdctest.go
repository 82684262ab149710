// Package pgcdctest starts throw-away PostgreSQL servers for the tests,
// examples and benchmarks of pgcdc and pgsink: initdb and pg_ctl as an
// unprivileged user (PostgreSQL refuses root), on a loopback port, with
// TLS from a CA made for the run, password authentication and
// wal_level=logical.
//
// A test that calls Start on a machine without the server programs is
// skipped with a message saying how to install them, except under
// CI=true, where it fails.
package pgcdctest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SuperPassword is the password of the "postgres" superuser of every
// server Start makes.
const SuperPassword = "hakit-test-super"

// InstallHint says how to get the server programs.
const InstallHint = "PostgreSQL server programs (initdb, pg_ctl) not found; install them: apt-get install -y postgresql"

// Server is a running PostgreSQL server.
type Server struct {
	Host string // 127.0.0.1
	Port int
	CA   string // the PEM file of the CA that signed the server's certificate
	Dir  string // the server's directory (data, logs, sockets)

	bin     string
	cred    *syscall.Credential
	data    string
	started bool
}

// Options tune Start.
type Options struct {
	// Settings are extra "-c name=value" server settings.
	Settings map[string]string
}

// BinDir finds initdb and pg_ctl: pg_config --bindir, then Debian's
// versioned directories, newest first. "" if there are none.
func BinDir() string {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// Start starts a server and stops it (immediate mode) at cleanup.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	return StartN(tb, 1, opts)[0]
}

// StartN starts n servers at once (initdb and start-up take most of a
// test's setup, and run on the server's processes, not the test's) and
// stops them at cleanup. It fails tb if any of them does not start.
func StartN(tb testing.TB, n int, opts Options) []*Server {
	tb.Helper()
	bin := BinDir()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal(InstallHint)
		}
		tb.Skip(InstallHint)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("running as root and there is no unprivileged %q user to run PostgreSQL as: %v", "postgres", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = start(bin, cred, opts)
		}()
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			tb.Cleanup(func() {
				if err := s.stop(); err != nil {
					tb.Error(err)
				}
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	return servers
}

// start makes and starts one server. The Server it returns, even with an
// error, must be stopped.
func start(bin string, cred *syscall.Credential, opts Options) (*Server, error) {
	// Not a test's TempDir: the server's user must be able to enter it.
	dir, err := os.MkdirTemp("", "hakit-pgcdc-")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", Dir: dir, bin: bin, cred: cred, data: filepath.Join(dir, "data")}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return s, err
		}
	}
	pw, err := s.write("pw", []byte(SuperPassword+"\n"), 0o600)
	if err != nil {
		return s, err
	}
	if err := s.run("initdb", "-D", s.data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", pw, "-E", "UTF8", "--no-sync"); err != nil {
		return s, err
	}
	// Only TLS over TCP, for ordinary and replication connections.
	if _, err := s.write("data/pg_hba.conf", []byte("local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl replication all 127.0.0.1/32 scram-sha-256\n"), 0o600); err != nil {
		return s, err
	}
	if s.CA, err = s.writeTLS(); err != nil {
		return s, err
	}
	if s.Port, err = freePort(); err != nil {
		return s, err
	}
	settings := map[string]string{
		"listen_addresses": "127.0.0.1", "port": strconv.Itoa(s.Port), "unix_socket_directories": dir,
		"fsync": "off", "ssl": "on", "ssl_cert_file": filepath.Join(dir, "server.crt"), "ssl_key_file": filepath.Join(dir, "server.key"),
		"wal_level": "logical", "max_wal_senders": "20", "max_replication_slots": "20", "max_connections": "100",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	var o []string
	for k, v := range settings {
		o = append(o, fmt.Sprintf("-c %s=%s", k, v))
	}
	sort.Strings(o)
	if err := s.run("pg_ctl", "-D", s.data, "-l", filepath.Join(dir, "server.log"), "-o", strings.Join(o, " "), "-w", "-t", "60", "start"); err != nil {
		return s, err
	}
	s.started = true
	return s, nil
}

// stop stops the server if it started and removes its directory.
func (s *Server) stop() error {
	var err error
	if s.started {
		err = s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop")
	}
	return errors.Join(err, os.RemoveAll(s.Dir))
}

// DSN returns a connection string for user with password on database
// db, with sslmode=verify-full against the server's CA.
func (s *Server) DSN(user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + db}
	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {s.CA}, "connect_timeout": {"10"}}
	u.RawQuery = q.Encode()
	return u.String()
}

// SuperDSN is DSN for the superuser on database "postgres".
func (s *Server) SuperDSN() string { return s.DSN("postgres", SuperPassword, "postgres") }

// Exec runs statements as the superuser on database db, failing tb on
// error.
func (s *Server) Exec(tb testing.TB, db string, stmts ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres", SuperPassword, db))
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	return string(b)
}

func (s *Server) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	// HOME too: the server's own client connections (a subscription)
	// look for certificates there, and root's is not readable.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "HOME="+s.Dir)
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, s.Log())
	}
	return nil
}

func (s *Server) write(name string, b []byte, mode os.FileMode) (string, error) {
	path := filepath.Join(s.Dir, name)
	if err := os.WriteFile(path, b, mode); err != nil {
		return "", err
	}
	if s.cred != nil {
		if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return "", err
		}
	}
	return path, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeTLS makes a CA and a server certificate for 127.0.0.1 signed by
// it, and returns the CA's file.
func (s *Server) writeTLS() (string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hakit pgcdc test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	if _, err := s.write("server.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", err
	}
	if _, err := s.write("server.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", err
	}
	return s.write("ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
}
