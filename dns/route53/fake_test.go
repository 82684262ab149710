package route53

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/route53"
)

// fakeRoute53 implements the three Route 53 calls the switcher makes, in
// the 2013-04-01 REST-XML wire format, with Route 53's rules for change
// batches: applied in order and atomically, CREATE of an existing set and
// DELETE of a missing or different one fail the whole batch with
// InvalidChangeBatch.
type fakeRoute53 struct {
	zoneID string

	mu          sync.Mutex
	sets        map[setKey]xmlRRSet
	changes     map[string]int // change ID -> GetChange polls left before INSYNC
	nextChange  int
	insyncAfter int    // PENDING answers before INSYNC, for new changes
	failWith    string // if set, every request fails with this error code
	batches     [][]xmlChange
	polls       int
}

type setKey struct{ name, typ, id string }

const r53NS = "https://route53.amazonaws.com/doc/2013-04-01/"

type xmlRRSet struct {
	Name            string      `xml:"Name"`
	Type            string      `xml:"Type"`
	SetIdentifier   string      `xml:"SetIdentifier,omitempty"`
	Failover        string      `xml:"Failover,omitempty"`
	TTL             *int64      `xml:"TTL,omitempty"`
	ResourceRecords *xmlRecords `xml:"ResourceRecords,omitempty"`
	HealthCheckID   string      `xml:"HealthCheckId,omitempty"`
}

type xmlRecords struct {
	Records []xmlRecord `xml:"ResourceRecord"`
}

type xmlRecord struct {
	Value string `xml:"Value"`
}

type xmlChange struct {
	Action string   `xml:"Action"`
	Set    xmlRRSet `xml:"ResourceRecordSet"`
}

type xmlChangeRequest struct {
	XMLName xml.Name    `xml:"ChangeResourceRecordSetsRequest"`
	Comment string      `xml:"ChangeBatch>Comment"`
	Changes []xmlChange `xml:"ChangeBatch>Changes>Change"`
}

type xmlChangeInfo struct {
	ID          string `xml:"Id"`
	Status      string `xml:"Status"`
	SubmittedAt string `xml:"SubmittedAt"`
	Comment     string `xml:"Comment,omitempty"`
}

func newFakeRoute53(t testing.TB, zoneID string) (*fakeRoute53, *route53.Client) {
	t.Helper()
	f := &fakeRoute53{zoneID: zoneID, sets: map[setKey]xmlRRSet{}, changes: map[string]int{}}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	client := route53.New(route53.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDHAKITTEST", "not-a-real-secret", ""),
		BaseEndpoint:     aws.String(srv.URL),
		HTTPClient:       srv.Client(),
		RetryMaxAttempts: 1, // the switcher's caller decides about retries
	})
	return f, client
}

func (f *fakeRoute53) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDHAKITTEST/") {
		f.error(w, http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != "" {
		status := http.StatusBadRequest
		if f.failWith == "ServiceUnavailable" || f.failWith == "InternalError" {
			status = http.StatusServiceUnavailable
		} else if f.failWith == "AccessDenied" {
			status = http.StatusForbidden
		}
		f.error(w, status, f.failWith, "injected failure")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/2013-04-01/")
	switch {
	case strings.HasPrefix(path, "change/") && r.Method == http.MethodGet:
		f.getChange(w, strings.TrimPrefix(path, "change/"))
	case strings.HasPrefix(path, "hostedzone/") && strings.HasSuffix(path, "/rrset") || strings.HasSuffix(path, "/rrset/"):
		zone := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(path, "hostedzone/"), "/"), "/rrset")
		if zone != f.zoneID {
			f.error(w, http.StatusNotFound, "NoSuchHostedZone", "No hosted zone found with ID: "+zone)
			return
		}
		switch r.Method {
		case http.MethodPost:
			f.change(w, r)
		case http.MethodGet:
			f.list(w, r)
		default:
			f.error(w, http.StatusMethodNotAllowed, "InvalidInput", "method")
		}
	default:
		f.error(w, http.StatusNotFound, "InvalidInput", "unknown path "+r.URL.Path)
	}
}

func (f *fakeRoute53) error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0"?>
<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`,
		r53NS, code, xmlEscape(msg))
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (f *fakeRoute53) writeXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "text/xml")
	out, err := xml.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Write([]byte(xml.Header))
	w.Write(out)
}

func normName(n string) string {
	n = strings.ToLower(n)
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}

func keyOf(s xmlRRSet) setKey { return setKey{normName(s.Name), s.Type, s.SetIdentifier} }

// sameValues reports whether a DELETE's set matches the stored one exactly.
func sameValues(a, b xmlRRSet) bool {
	vals := func(s xmlRRSet) []string {
		var out []string
		if s.ResourceRecords != nil {
			for _, r := range s.ResourceRecords.Records {
				out = append(out, r.Value)
			}
		}
		slices.Sort(out)
		return out
	}
	return aws.ToInt64(a.TTL) == aws.ToInt64(b.TTL) && a.Failover == b.Failover &&
		a.HealthCheckID == b.HealthCheckID && slices.Equal(vals(a), vals(b))
}

func (f *fakeRoute53) change(w http.ResponseWriter, r *http.Request) {
	var req xmlChangeRequest
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil {
		f.error(w, http.StatusBadRequest, "InvalidInput", "cannot parse request: "+err.Error())
		return
	}
	if len(req.Changes) == 0 {
		f.error(w, http.StatusBadRequest, "InvalidInput", "no changes")
		return
	}
	f.batches = append(f.batches, req.Changes)
	next := make(map[setKey]xmlRRSet, len(f.sets))
	for k, v := range f.sets {
		next[k] = v
	}
	var msgs []string
	for _, c := range req.Changes {
		s := c.Set
		if (s.Failover == "") != (s.SetIdentifier == "") {
			f.error(w, http.StatusBadRequest, "InvalidInput", "Failover and SetIdentifier go together")
			return
		}
		k := keyOf(s)
		cur, exists := next[k]
		desc := fmt.Sprintf("[name='%s', type='%s'", k.name, k.typ)
		if k.id != "" {
			desc += fmt.Sprintf(", set-identifier='%s'", k.id)
		}
		desc += "]"
		switch c.Action {
		case "CREATE":
			if exists {
				msgs = append(msgs, "Tried to create resource record set "+desc+" but it already exists")
				continue
			}
			next[k] = s
		case "DELETE":
			switch {
			case !exists:
				msgs = append(msgs, "Tried to delete resource record set "+desc+" but it was not found")
			case !sameValues(cur, s):
				msgs = append(msgs, "Tried to delete resource record set "+desc+" but the values provided do not match the current values")
			default:
				delete(next, k)
			}
		case "UPSERT":
			next[k] = s
		default:
			f.error(w, http.StatusBadRequest, "InvalidInput", "unknown action "+c.Action)
			return
		}
	}
	if len(msgs) > 0 {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<?xml version="1.0"?>
<InvalidChangeBatch xmlns="%s"><Messages>`, r53NS)
		for _, m := range msgs {
			fmt.Fprintf(w, "<Message>%s</Message>", xmlEscape(m))
		}
		fmt.Fprint(w, `</Messages><RequestId>req-2</RequestId></InvalidChangeBatch>`)
		return
	}
	f.sets = next
	f.nextChange++
	id := "C" + strconv.Itoa(f.nextChange)
	f.changes[id] = f.insyncAfter
	f.writeXML(w, struct {
		XMLName xml.Name      `xml:"ChangeResourceRecordSetsResponse"`
		NS      string        `xml:"xmlns,attr"`
		Info    xmlChangeInfo `xml:"ChangeInfo"`
	}{NS: r53NS, Info: xmlChangeInfo{ID: "/change/" + id, Status: "PENDING", SubmittedAt: time.Now().UTC().Format(time.RFC3339), Comment: req.Comment}})
}

func (f *fakeRoute53) getChange(w http.ResponseWriter, id string) {
	left, ok := f.changes[id]
	if !ok {
		f.error(w, http.StatusNotFound, "NoSuchChange", "A change with the specified change ID does not exist: "+id)
		return
	}
	f.polls++
	status := "INSYNC"
	if left > 0 {
		f.changes[id] = left - 1
		status = "PENDING"
	}
	f.writeXML(w, struct {
		XMLName xml.Name      `xml:"GetChangeResponse"`
		NS      string        `xml:"xmlns,attr"`
		Info    xmlChangeInfo `xml:"ChangeInfo"`
	}{NS: r53NS, Info: xmlChangeInfo{ID: "/change/" + id, Status: status, SubmittedAt: time.Now().UTC().Format(time.RFC3339)}})
}

// sortKey orders record sets as Route 53 lists them: by name with its
// labels reversed, then type, then set identifier.
func sortKey(k setKey) string {
	labels := strings.Split(strings.TrimSuffix(k.name, "."), ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".") + "\x00" + k.typ + "\x00" + k.id
}

func (f *fakeRoute53) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	max := 100
	if s := q.Get("maxitems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			f.error(w, http.StatusBadRequest, "InvalidInput", "bad maxitems")
			return
		}
		max = n
	}
	start := ""
	if name := q.Get("name"); name != "" {
		start = sortKey(setKey{normName(name), q.Get("type"), q.Get("identifier")})
	}
	var keys []setKey
	for k := range f.sets {
		if sortKey(k) >= start {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b setKey) int { return strings.Compare(sortKey(a), sortKey(b)) })
	type resp struct {
		XMLName              xml.Name   `xml:"ListResourceRecordSetsResponse"`
		NS                   string     `xml:"xmlns,attr"`
		Sets                 []xmlRRSet `xml:"ResourceRecordSets>ResourceRecordSet"`
		IsTruncated          bool       `xml:"IsTruncated"`
		NextRecordName       string     `xml:"NextRecordName,omitempty"`
		NextRecordType       string     `xml:"NextRecordType,omitempty"`
		NextRecordIdentifier string     `xml:"NextRecordIdentifier,omitempty"`
		MaxItems             int        `xml:"MaxItems"`
	}
	out := resp{NS: r53NS, MaxItems: max}
	for i, k := range keys {
		if i == max {
			out.IsTruncated = true
			out.NextRecordName, out.NextRecordType, out.NextRecordIdentifier = k.name, k.typ, k.id
			break
		}
		out.Sets = append(out.Sets, f.sets[k])
	}
	f.writeXML(w, out)
}

// put stores a record set directly, as an operator editing the zone would.
func (f *fakeRoute53) put(s xmlRRSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets[keyOf(s)] = s
}

// get returns a stored record set.
func (f *fakeRoute53) get(name, typ, id string) (xmlRRSet, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sets[setKey{normName(name), typ, id}]
	return s, ok
}

func (f *fakeRoute53) setFail(code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failWith = code
}
