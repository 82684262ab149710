package route53

import (
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/hakit/hakit/fence"
)

func p50(b *testing.B, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Millisecond), "p50-ms")
}

// BenchmarkPromote measures a takeover against the in-process Route 53
// (TLS, SigV4, REST-XML; INSYNC at the first poll): two reads, one
// change batch, one GetChange, one confirming read. The baseline is one
// ListResourceRecordSets call.
func BenchmarkPromote(b *testing.B) {
	_, client := newFakeRoute53(b, testZoneID)
	b.Run("baseline-list", func(b *testing.B) {
		var ds []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := client.ListResourceRecordSets(b.Context(), &awsr53.ListResourceRecordSetsInput{
				HostedZoneId: aws.String(testZoneID), StartRecordName: aws.String("x.example.com."), StartRecordType: types.RRTypeA, MaxItems: aws.Int32(1),
			}); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		p50(b, ds)
	})
	b.Run("promote-takeover", func(b *testing.B) {
		name := newName()
		var sws []*Switcher
		for _, m := range []string{"a", "b"} {
			s, err := New(testConfig(client, name, m))
			if err != nil {
				b.Fatal(err)
			}
			sws = append(sws, s)
		}
		var ds []time.Duration
		tok := fence.Token(0)
		for b.Loop() {
			tok++
			start := time.Now()
			if err := sws[tok%2].Promote(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		p50(b, ds)
	})
}
