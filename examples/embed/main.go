// Command embed is the smallest complete wiring of hakit into a
// replication process: an embedded Raft group elects the active member and
// keeps the checkpoints, a Stream copies a file log into a transactional
// file sink while this member is active, and the Node's HTTP interface
// tells a load balancer which member that is. The README quotes run.
//
// Start one member per host, with the same -peers everywhere and each
// member's own certificate (package raftcert; "hamirror certs" writes a
// set):
//
//	embed -id a -peers a=10.0.0.1:7400,b=10.0.0.2:7400,c=10.0.0.3:7400 \
//	      -ca raft-ca.crt -cert a.crt -key a.key \
//	      -data /var/lib/embed -source /srv/changes -sink /mnt/target/changes.log
//
// -insecure instead of the certificates runs the members over plain TCP:
// trusted, isolated networks only. A single member (-peers naming only
// itself) runs alone, for a try on one machine. hamirror, next to this
// directory, is the full daemon.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease/raftlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
)

func main() {
	id := flag.String("id", "a", "this member's ID")
	peers := flag.String("peers", "a=127.0.0.1:7400", "every member's Raft address, ID=host:port,...")
	data := flag.String("data", "embed-data", "Raft data directory")
	source := flag.String("source", "changes", "file log directory to replicate")
	target := flag.String("sink", "target.log", "transactional file sink")
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP address of /health, /primary, /status")
	ca := flag.String("ca", "", "PEM file of the CA that signs the members' certificates")
	cert := flag.String("cert", "", "PEM file of this member's certificate (URI SAN hakit://member/<id>)")
	key := flag.String("key", "", "PEM file of this member's key")
	insecure := flag.Bool("insecure", false, "plain TCP between members: trusted, isolated networks only")
	flag.Parse()
	cfg := raftlease.Config{ID: *id, Peers: parsePeers(*peers), DataDir: *data, Insecure: *insecure}
	if *cert != "" {
		var err error
		if cfg.TLS, err = memberTLS(*ca, *cert, *key); err != nil {
			log.Fatal(err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, *source, *target, *listen); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg raftlease.Config, source, target, listen string) error {
	group, err := raftlease.Start(ctx, cfg)
	if err != nil {
		return err
	}
	sink, err := filesink.Open(target)
	if err != nil {
		group.Close()
		return err
	}
	defer sink.Close()
	stream := &replicate.Stream{
		Source: &filelog.Source{Dir: source},
		Sink:   sink.Conditional(), // commits position with records: exactly once
		Store:  group.Store(),      // checkpoints, fenced, replicated by Raft
		Key:    "embed/checkpoint",
	}
	node, err := ha.New(ha.Config{
		ID:       cfg.ID,
		Elector:  group, // closed by Run when it returns
		Switcher: &dns.Health{},
		Work:     stream.Run, // runs while active, with the term's fencing token
	})
	if err != nil {
		group.Close()
		return err
	}
	srv := &http.Server{Addr: listen, Handler: node.Handler()} // /health, /primary, /status, admin POSTs
	go func() { _ = srv.ListenAndServe() }()
	defer srv.Close()
	return node.Run(ctx) // until SIGTERM: drain, final checkpoint, resign
}

// memberTLS loads this member's certificate and the members' CA.
func memberTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("embed: member certificate: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("embed: -ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("embed: -ca: %s holds no PEM certificate", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

func parsePeers(s string) map[string]string {
	peers := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "embed: -peers: %q is not ID=host:port\n", kv)
			os.Exit(2)
		}
		peers[k] = v
	}
	return peers
}
