package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hakit/hakit/lease/raftlease/raftcert"
)

// cmdCerts writes a CA of the Raft links' own and a certificate per
// member naming it (URI SAN hakit://member/<id>): the files raft.tls
// needs. The CA's key is written too, to sign a member added later; keep
// it off the members.
func cmdCerts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hamirror certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory to write the PEM files to (required; created 0700)")
	members := fs.String("members", "", "`ID[=HOST],...` of the members; HOSTs (IP or DNS name) are added as SANs for other tools")
	days := fs.Int("days", 365, "validity of the certificates, in days")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *members == "" || *days < 1 {
		fmt.Fprintln(stderr, "hamirror certs: -dir and -members are required, -days at least 1")
		fs.Usage()
		return errUsage
	}
	hosts, err := parseCertMembers(*members)
	if err != nil {
		return err
	}
	return writeMemberCerts(*dir, hosts, time.Duration(*days)*24*time.Hour, stdout)
}

// parseCertMembers reads "a=10.0.0.1,b,c=host.example" into ID -> hosts.
func parseCertMembers(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, item := range strings.Split(s, ",") {
		id, host, _ := strings.Cut(strings.TrimSpace(item), "=")
		if id == "" || strings.ContainsAny(id, " \t/") {
			return nil, fmt.Errorf("hamirror certs: -members: %q is not ID or ID=HOST", item)
		}
		if host != "" {
			out[id] = append(out[id], host)
		} else if _, ok := out[id]; !ok {
			out[id] = nil
		}
	}
	return out, nil
}

// writeMemberCerts writes raft-ca.crt, raft-ca.key and <id>.crt, <id>.key
// for every member into dir. Keys are 0600; nothing is overwritten.
func writeMemberCerts(dir string, members map[string][]string, validity time.Duration, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("hamirror certs: %w", err)
	}
	ca, err := raftcert.NewCA("hamirror raft CA", validity)
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	files := map[string][]byte{"raft-ca.crt": ca.CertPEM(), "raft-ca.key": caKey}
	for id, hosts := range members {
		cert, err := ca.Issue(id, validity, hosts...)
		if err != nil {
			return err
		}
		key, err := raftcert.KeyPEM(cert)
		if err != nil {
			return err
		}
		files[id+".crt"], files[id+".key"] = raftcert.CertPEM(cert), key
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(files)) {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			errs = append(errs, fmt.Errorf("hamirror certs: %w", err))
			continue
		}
		_, werr := f.Write(files[name])
		errs = append(errs, werr, f.Close())
		fmt.Fprintln(stdout, path)
	}
	return errors.Join(errs...)
}
