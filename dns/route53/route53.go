// Package route53 is a dns.Switcher that points a Route 53 record set at
// the active member, fenced by a token record in the same hosted zone and
// Route 53's atomic change batches.
//
// # The records
//
// Promote UPSERTs the record set Config.Name/Config.Type (A, AAAA or
// CNAME; a failover routing record when Config.Failover is set, with its
// SetIdentifier and HealthCheckId) and replaces the TXT record set at
// Config.TokenName (default "_hakit.<Name>") with the single value
//
//	"hakit-token=<token>" "member=<member ID>"
//
// in one change batch, then polls GetChange until Route 53 reports the
// change INSYNC on all its name servers.
//
// # The fencing rule
//
// A Route 53 change batch is applied whole or not at all, and a DELETE
// succeeds only if the record set exists with exactly the values given. So
// every change is a read followed by a conditional batch:
//
//  1. Read the TXT record set at TokenName (ListResourceRecordSets). It must
//     be absent or hold exactly one value in the form above; anything else
//     is an error (ErrMalformed), never "no token".
//  2. If it holds a token greater than the caller's token t, refuse with an
//     error matching fence.ErrStale; nothing is sent. If it holds t itself
//     for another member, refuse with ErrConflict.
//  3. Send one batch: DELETE of the token record set exactly as read
//     (omitted if there was none) and CREATE of the new one, plus the
//     change of the record set at Name. If the token record changed after
//     the read, the DELETE (or, if there was none, the CREATE) fails, and
//     with it the whole batch: Route 53 answers InvalidChangeBatch.
//  4. On InvalidChangeBatch, read the token record again and return
//     fence.ErrStale if it now holds a token greater than t, or
//     ErrConflict otherwise (transient: a dns.Retry reads again and
//     retries). A stale refusal is never retried.
//  5. Wait for INSYNC, then read the token record back (ErrNotConfirmed if
//     it is not what was written).
//
// Demote(t) removes the record set at Name (DELETE of exactly what it
// reads) in one batch conditional on the token record being exactly
// "token t, this member" (a DELETE and CREATE of that same record). The
// token record itself stays: it is the fence, and removing it would let a
// member with an older token take the idle name. If the token record
// holds an older token or none, there is nothing of term t to remove and
// Demote succeeds without a change; if it holds a newer one, it fails with
// fence.ErrStale.
//
// A change batch whose answer was lost may still have been applied. It
// carried its term's token and its condition, so it cannot overwrite a
// newer term's records, but after a failed Promote a Demote may find it
// only once Route 53 has applied it; a retried call re-reads and settles
// the state.
//
// The fence holds only if every writer of the two record sets follows this
// rule: give the IAM principal route53:ChangeResourceRecordSets on the
// zone, limited (route53:ChangeResourceRecordSetsNormalizedRecordNames) to
// the two names, and do not edit them by hand while members run.
//
// Errors that Route 53 reports as the caller's fault (access denied, no
// such zone, invalid input) wrap ErrRejected and are permanent (marked
// with dns.Permanent); throttling, PriorRequestNotComplete, server errors
// and network failures wrap ErrService and are transient.
package route53

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/internal/tokenrec"
	"github.com/hakit/hakit/fence"
)

// Errors of the switcher; each returned error wraps one of them and names
// the zone, the record and the tokens involved.
var (
	// ErrConflict: the token record changed between the read and the
	// change batch, or holds this token for another member.
	ErrConflict = errors.New("route53: token record changed concurrently")
	// ErrMalformed: the token record is not in the form this package
	// writes. Permanent: a person must look at the zone.
	ErrMalformed = errors.New("route53: malformed token record")
	// ErrRejected: Route 53 refused the request as the caller's fault
	// (credentials, permissions, zone, input). Permanent.
	ErrRejected = errors.New("route53: request rejected")
	// ErrService: throttling, a server-side error or the network.
	ErrService = errors.New("route53: service error")
	// ErrNotConfirmed: after INSYNC the token record did not read back
	// as written.
	ErrNotConfirmed = errors.New("route53: change not confirmed")
)

// Switcher points Config.Name at this member. It is safe for concurrent
// use; its calls run one at a time, and a call waiting for the one before
// it gives up when its own context ends.
type Switcher struct {
	cfg Config
	log *slog.Logger

	// sem holds the right to make a call: one slot, a channel rather
	// than a mutex so that a call waiting for the one before it honours
	// its context. It guards pending.
	sem     chan struct{}
	pending string // a change this switcher made and has not seen INSYNC

	// afterRead, if set by a test, runs between the read of the token
	// record and the change batch, to stage a race.
	afterRead func()
}

var _ dns.Switcher = (*Switcher)(nil)

// New validates cfg and returns a Switcher. It does not contact Route 53.
func New(cfg Config) (*Switcher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.normalized()
	log := cfg.Logger
	return &Switcher{cfg: cfg, log: log.With("zone", cfg.HostedZoneID, "name", cfg.Name, "member", cfg.Member), sem: make(chan struct{}, 1)}, nil
}

// String names the switcher in dns.Multi's errors.
func (s *Switcher) String() string {
	return fmt.Sprintf("route53 %s %s %s", s.cfg.HostedZoneID, s.cfg.Name, s.cfg.Type)
}

// Promote points Name at Targets for the term with token t, under the
// rule in the package documentation, and returns once Route 53 reports
// the change INSYNC.
func (s *Switcher) Promote(ctx context.Context, t fence.Token) error {
	if t == 0 {
		return fence.ErrNoToken
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	read, cur, err := s.readToken(ctx)
	if err != nil {
		return err
	}
	if err := s.check(t, cur); err != nil {
		return fmt.Errorf("route53: promote %s: %w", s.cfg.Name, err)
	}
	me := owner{Token: t, Member: s.cfg.Member}
	want := s.recordSet()
	if cur != nil && *cur == me {
		have, err := s.readRecord(ctx)
		if err != nil {
			return err
		}
		if have != nil && sameSet(have, want) {
			return s.waitPending(ctx) // already in place; a retry still waits for INSYNC
		}
	}
	if s.afterRead != nil {
		s.afterRead()
	}
	var changes []types.Change
	if read != nil {
		changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: read})
	}
	changes = append(changes,
		types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: s.tokenSet(me)},
		types.Change{Action: types.ChangeActionUpsert, ResourceRecordSet: want})
	if err := s.apply(ctx, "promote", t, changes); err != nil {
		return err
	}
	if err := s.confirm(ctx, &me, true); err != nil {
		return err
	}
	prev := fence.Token(0)
	if cur != nil {
		prev = cur.Token
	}
	s.log.Info("route53: promoted", "token", t.String(), "previous_token", prev.String(), "targets", s.cfg.Targets)
	return nil
}

// Demote removes the record set at Name if, and only if, the token record
// holds t and this member's ID; it returns once Route 53 reports the
// change INSYNC. The token record stays, as the fence.
func (s *Switcher) Demote(ctx context.Context, t fence.Token) error {
	if t == 0 {
		return fence.ErrNoToken
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	read, cur, err := s.readToken(ctx)
	if err != nil {
		return err
	}
	if err := s.check(t, cur); err != nil {
		return fmt.Errorf("route53: demote %s: %w", s.cfg.Name, err)
	}
	if cur == nil || cur.Token < t {
		return s.waitPending(ctx) // nothing of term t is in the zone
	}
	have, err := s.readRecord(ctx)
	if err != nil {
		return err
	}
	if have == nil {
		return s.waitPending(ctx) // already withdrawn
	}
	if s.afterRead != nil {
		s.afterRead()
	}
	// DELETE and CREATE of the same token record make the batch
	// conditional on it without changing it: the token record stays as
	// the fence that keeps an older term from taking the idle name.
	changes := []types.Change{
		{Action: types.ChangeActionDelete, ResourceRecordSet: read},
		{Action: types.ChangeActionCreate, ResourceRecordSet: read},
		{Action: types.ChangeActionDelete, ResourceRecordSet: have},
	}
	if err := s.apply(ctx, "demote", t, changes); err != nil {
		return err
	}
	if err := s.confirm(ctx, cur, false); err != nil {
		return err
	}
	s.log.Info("route53: demoted", "token", t.String())
	return nil
}

// acquire waits for the call before this one to finish, or for ctx to end.
func (s *Switcher) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("route53: waiting for the previous call on %s: %w", s.cfg.Name, ctx.Err())
	}
}

func (s *Switcher) release() { <-s.sem }

// check applies step 2 of the rule.
func (s *Switcher) check(t fence.Token, cur *owner) error {
	return tokenrec.Check(s.cfg.TokenName, t, s.cfg.Member, cur, ErrConflict)
}

// tokenSet is the token record set of o.
func (s *Switcher) tokenSet(o owner) *types.ResourceRecordSet {
	return &types.ResourceRecordSet{
		Name:            aws.String(s.cfg.TokenName),
		Type:            types.RRTypeTxt,
		TTL:             aws.Int64(s.cfg.TTL),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(tokenValue(o))}},
	}
}

// recordSet is the record set Promote writes at Name.
func (s *Switcher) recordSet() *types.ResourceRecordSet {
	rs := &types.ResourceRecordSet{
		Name: aws.String(s.cfg.Name),
		Type: types.RRType(s.cfg.Type),
		TTL:  aws.Int64(s.cfg.TTL),
	}
	for _, tgt := range s.cfg.Targets {
		rs.ResourceRecords = append(rs.ResourceRecords, types.ResourceRecord{Value: aws.String(tgt)})
	}
	if s.cfg.Failover != "" {
		rs.Failover = types.ResourceRecordSetFailover(s.cfg.Failover)
		rs.SetIdentifier = aws.String(s.cfg.SetIdentifier)
	}
	if s.cfg.HealthCheckID != "" {
		rs.HealthCheckId = aws.String(s.cfg.HealthCheckID)
	}
	return rs
}

// sameSet reports whether the record set read equals the one Promote
// would write, values compared as a set.
func sameSet(have, want *types.ResourceRecordSet) bool {
	vals := func(rs *types.ResourceRecordSet) []string {
		var out []string
		for _, r := range rs.ResourceRecords {
			out = append(out, strings.ToLower(aws.ToString(r.Value)))
		}
		slices.Sort(out)
		return out
	}
	return aws.ToInt64(have.TTL) == aws.ToInt64(want.TTL) &&
		have.Failover == want.Failover &&
		aws.ToString(have.SetIdentifier) == aws.ToString(want.SetIdentifier) &&
		aws.ToString(have.HealthCheckId) == aws.ToString(want.HealthCheckId) &&
		slices.Equal(vals(have), vals(want))
}

// Observe reads Route 53's current state: the token record's token and
// member (zero and "" if there is none) and whether the record set at
// Name exists. It is for tests, monitoring and tools.
func (s *Switcher) Observe(ctx context.Context) (tok fence.Token, member string, active bool, err error) {
	_, cur, err := s.readToken(ctx)
	if err != nil {
		return 0, "", false, err
	}
	have, err := s.readRecord(ctx)
	if err != nil {
		return 0, "", false, err
	}
	if cur != nil {
		tok, member = cur.Token, cur.Member
	}
	return tok, member, have != nil, nil
}
