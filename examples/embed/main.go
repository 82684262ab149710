// Command embed is the smallest complete wiring of hakit into a
// replication process: an embedded Raft group elects the active member and
// keeps the checkpoints, a Stream copies a file log into a transactional
// file sink while this member is active, and the Node's HTTP interface
// tells a load balancer which member that is (GET /primary) and takes
// operator commands (POST /switchover). The README quotes run.
//
// Start one member per host, with the same -peers everywhere, each member's
// own certificate (package raftcert; "hamirror certs" writes a set) and the
// same admin token in $EMBED_ADMIN_TOKEN:
//
//	embed -id a -peers a=10.0.0.1:7400,b=10.0.0.2:7400,c=10.0.0.3:7400 \
//	      -ca raft-ca.crt -cert a.crt -key a.key \
//	      -listen 10.0.0.1:8080 -data /var/lib/embed \
//	      -source /srv/changes -sink /mnt/target/changes.log
//
// -insecure instead of the certificates runs the members over plain TCP:
// trusted, isolated networks only. Each member advertises its API (-api, default http://<listen>) in the
// Raft group, so a switchover asked of a standby is forwarded to the active
// member. The admin token is sent only over https or to a loopback address:
// between hosts, serve the API with TLS and advertise an https URL. A
// single member (-peers naming only itself) runs alone, for a try on one
// machine. hamirror, next to this directory, is the full daemon.
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

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease/raftlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
)

// options are the member's settings, one flag each.
type options struct {
	id, listen, api    string
	peers              map[string]string
	data, source, sink string
	token              string // the admin bearer token; "" refuses admin requests
	ca, cert, key      string // member TLS (PEM files)
	insecure           bool   // plain TCP between members
}

func main() {
	var o options
	flag.StringVar(&o.id, "id", "a", "this member's ID")
	peers := flag.String("peers", "a=127.0.0.1:7400", "every member's Raft address, ID=host:port,...")
	flag.StringVar(&o.data, "data", "embed-data", "Raft data directory")
	flag.StringVar(&o.source, "source", "changes", "file log directory to replicate")
	flag.StringVar(&o.sink, "sink", "target.log", "transactional file sink")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:8080", "host:port of the HTTP API (/primary, /status, POST /switchover)")
	flag.StringVar(&o.api, "api", "", "the API's URL as the other members reach it (default http://<listen>)")
	flag.StringVar(&o.ca, "ca", "", "PEM file of the CA that signs the members' certificates")
	flag.StringVar(&o.cert, "cert", "", "PEM file of this member's certificate (URI SAN hakit://member/<id>)")
	flag.StringVar(&o.key, "key", "", "PEM file of this member's key")
	flag.BoolVar(&o.insecure, "insecure", false, "plain TCP between members: trusted, isolated networks only")
	flag.Parse()
	o.peers = parsePeers(*peers)
	o.token = os.Getenv("EMBED_ADMIN_TOKEN")
	if o.api == "" {
		o.api = "http://" + o.listen
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options) error {
	cfg := raftlease.Config{ID: o.id, Peers: o.peers, DataDir: o.data, APIAddr: o.api, Insecure: o.insecure}
	if o.cert != "" {
		var err error
		if cfg.TLS, err = memberTLS(o.ca, o.cert, o.key); err != nil {
			return err
		}
	}
	group, err := raftlease.Start(ctx, cfg)
	if err != nil {
		return err
	}
	sink, err := filesink.Open(o.sink)
	if err != nil {
		group.Close()
		return err
	}
	defer sink.Close()
	stream := &replicate.Stream{
		Source: &filelog.Source{Dir: o.source},
		Sink:   sink.Conditional(), // commits position with records: exactly once
		Store:  group.Store(),      // checkpoints, fenced, replicated by Raft
		Key:    "embed/checkpoint",
	}
	node, err := ha.New(ha.Config{
		ID:         o.id,
		Elector:    group,          // closed by Run when it returns
		Work:       stream.RunTerm, // runs while active, under the term's fencing token
		AdminToken: o.token,        // required by POST /switchover; sent when a standby forwards one
	})
	if err != nil {
		group.Close()
		return err
	}
	srv := &http.Server{Addr: o.listen, Handler: node.Handler()} // /primary for the load balancer, /status, POST /switchover
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
