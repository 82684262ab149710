package route53

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

// readToken reads the token record set (step 1 of the rule). It returns
// the set exactly as read, for the conditional DELETE, and its meaning:
// nil when there is none.
func (s *Switcher) readToken(ctx context.Context) (*types.ResourceRecordSet, *owner, error) {
	rs, err := s.find(ctx, s.cfg.TokenName, types.RRTypeTxt, "")
	if err != nil || rs == nil {
		return nil, nil, err
	}
	o, err := decodeTokenSet(rs)
	if err != nil {
		return nil, nil, dns.Permanent(fmt.Errorf("route53: token record %s in zone %s: %w", s.cfg.TokenName, s.cfg.HostedZoneID, err))
	}
	return rs, &o, nil
}

// decodeTokenSet interprets the token record set: exactly one value in
// the form tokenValue writes, and no routing policy.
func decodeTokenSet(rs *types.ResourceRecordSet) (owner, error) {
	if rs.SetIdentifier != nil || rs.AliasTarget != nil {
		return owner{}, fmt.Errorf("is an alias or routing-policy record: %w", ErrMalformed)
	}
	if len(rs.ResourceRecords) != 1 {
		return owner{}, fmt.Errorf("%d values, want 1: %w", len(rs.ResourceRecords), ErrMalformed)
	}
	o, err := parseTokenValue(aws.ToString(rs.ResourceRecords[0].Value))
	if err != nil {
		return owner{}, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	return o, nil
}

// readRecord reads the record set at Name (with SetIdentifier for a
// failover record), or nil if there is none.
func (s *Switcher) readRecord(ctx context.Context) (*types.ResourceRecordSet, error) {
	return s.find(ctx, s.cfg.Name, types.RRType(s.cfg.Type), s.cfg.SetIdentifier)
}

// find returns the record set with exactly this name, type and set
// identifier, or nil.
func (s *Switcher) find(ctx context.Context, name string, typ types.RRType, setID string) (*types.ResourceRecordSet, error) {
	in := &route53.ListResourceRecordSetsInput{
		HostedZoneId:    aws.String(s.cfg.HostedZoneID),
		StartRecordName: aws.String(name),
		StartRecordType: typ,
		MaxItems:        aws.Int32(1),
	}
	if setID != "" {
		in.StartRecordIdentifier = aws.String(setID)
	}
	out, err := s.cfg.Client.ListResourceRecordSets(ctx, in)
	if err != nil {
		return nil, s.classify(ctx, fmt.Sprintf("list %s %s in zone %s", name, typ, s.cfg.HostedZoneID), err)
	}
	for i := range out.ResourceRecordSets {
		rs := &out.ResourceRecordSets[i]
		if fqdn(aws.ToString(rs.Name)) == name && rs.Type == typ && aws.ToString(rs.SetIdentifier) == setID {
			return rs, nil
		}
	}
	return nil, nil
}

// apply sends one change batch (step 3), maps a failed condition (step 4)
// and waits for INSYNC.
func (s *Switcher) apply(ctx context.Context, op string, t fence.Token, changes []types.Change) error {
	what := fmt.Sprintf("%s %s with token %d in zone %s", op, s.cfg.Name, t, s.cfg.HostedZoneID)
	out, err := s.cfg.Client.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(s.cfg.HostedZoneID),
		ChangeBatch: &types.ChangeBatch{
			Comment: aws.String(fmt.Sprintf("hakit %s by member %s with token %d", op, s.cfg.Member, t)),
			Changes: changes,
		},
	})
	var icb *types.InvalidChangeBatch
	if errors.As(err, &icb) {
		msgs := strings.Join(icb.Messages, "; ")
		if msgs == "" {
			msgs = icb.ErrorMessage()
		}
		_, cur, rerr := s.readToken(ctx)
		if rerr == nil && cur != nil && cur.Token > t {
			return fmt.Errorf("route53: %s: lost the race to member %q: %w", what, cur.Member, fence.Stale(t, cur.Token))
		}
		now := "unreadable"
		if rerr == nil {
			now = cur.String()
		}
		return fmt.Errorf("route53: %s: change batch refused (%s); token record %s now %s: %w",
			what, msgs, s.cfg.TokenName, now, ErrConflict)
	}
	if err != nil {
		return s.classify(ctx, what, err)
	}
	if out.ChangeInfo == nil || out.ChangeInfo.Id == nil {
		return fmt.Errorf("route53: %s: answer has no change ID: %w", what, ErrService)
	}
	s.pending = aws.ToString(out.ChangeInfo.Id)
	return s.waitPending(ctx)
}

// waitPending polls GetChange, with backoff, until the last change this
// switcher made is INSYNC or ctx ends.
func (s *Switcher) waitPending(ctx context.Context) error {
	if s.pending == "" {
		return nil
	}
	wait := s.cfg.PollInitial
	for {
		out, err := s.cfg.Client.GetChange(ctx, &route53.GetChangeInput{Id: aws.String(s.pending)})
		if err != nil {
			return s.classify(ctx, "wait for change "+s.pending+" to reach INSYNC", err)
		}
		if out.ChangeInfo != nil && out.ChangeInfo.Status == types.ChangeStatusInsync {
			s.pending = ""
			return nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("route53: change %s to %s not yet INSYNC: %w", s.pending, s.cfg.Name, ctx.Err())
		}
		wait = min(2*wait, s.cfg.PollMax)
	}
}

// confirm reads both record sets back after INSYNC (step 5): the token
// record must be want, and the record set at Name present or absent.
func (s *Switcher) confirm(ctx context.Context, want *owner, present bool) error {
	_, cur, err := s.readToken(ctx)
	if err != nil {
		return fmt.Errorf("route53: confirm %s: %w", s.cfg.Name, err)
	}
	if (want == nil) != (cur == nil) || (want != nil && *want != *cur) {
		return fmt.Errorf("route53: confirm: token record %s reads %v, want %v: %w", s.cfg.TokenName, cur, want, ErrNotConfirmed)
	}
	have, err := s.readRecord(ctx)
	if err != nil {
		return fmt.Errorf("route53: confirm %s: %w", s.cfg.Name, err)
	}
	if (have != nil) != present {
		return fmt.Errorf("route53: confirm: record set %s %s present = %v, want %v: %w", s.cfg.Name, s.cfg.Type, have != nil, present, ErrNotConfirmed)
	}
	return nil
}

// transientCodes are Route 53 error codes that a later attempt may cure.
var transientCodes = map[string]bool{
	"Throttling":              true,
	"ThrottlingException":     true,
	"PriorRequestNotComplete": true,
	"ServiceUnavailable":      true,
	"InternalError":           true,
	"InternalFailure":         true,
	"RequestTimeout":          true,
}

// classify wraps an error of the SDK as permanent (ErrRejected) or
// transient (ErrService), or as the caller's context error.
func (s *Switcher) classify(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("route53: %s: %w", what, errors.Join(cerr, err))
	}
	var status interface{ HTTPStatusCode() int }
	serverSide := errors.As(err, &status) && status.HTTPStatusCode() >= 500
	var ae smithy.APIError
	if errors.As(err, &ae) && !serverSide && !transientCodes[ae.ErrorCode()] && ae.ErrorFault() != smithy.FaultServer {
		return dns.Permanent(fmt.Errorf("route53: %s: %w: %w", what, err, ErrRejected))
	}
	return fmt.Errorf("route53: %s: %w: %w", what, err, ErrService)
}
