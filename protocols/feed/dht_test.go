package feed

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/multiformats/go-base32"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/identity"
)

// hostileValidator accepts anything and never lets a record it holds be replaced: a DHT server that keeps
// serving what was planted in it.
type hostileValidator struct{}

func (hostileValidator) Validate(string, []byte) error { return nil }
func (hostileValidator) Select(_ string, vs [][]byte) (int, error) {
	return len(vs) - 1, nil
}

func dsKey(key string) ds.Key {
	return ds.NewKey("/" + HeadNamespace + "/" + base32.RawStdEncoding.EncodeToString([]byte(key)))
}

// plant writes a value record straight into a DHT server's datastore, as the value store files it.
func plant(t *testing.T, d ds.Datastore, key string, value []byte) {
	t.Helper()
	rec := &recpb.Record{Key: []byte(key), Value: value, TimeReceived: time.Now().UTC().Format(time.RFC3339Nano)}
	raw, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Put(context.Background(), dsKey(key), raw); err != nil {
		t.Fatal(err)
	}
}

// A stale or forged head record served by hostile DHT servers (ground to be the closest to the record's key,
// and refusing the real record) never wins over the real one: the validator drops forgeries, Select takes the
// highest seq among all answers, and a node that knows a newer head never goes back, even when only hostile
// servers answer.
func TestHostileDHTHeadNeverWins(t *testing.T) {
	mn, nodes := testNet(t, 5, netOpts{noDir: true})
	m, reader := nodes[0], nodes[4]
	in, err := m.svc.Create(t.Context(), mart())
	if err != nil {
		t.Fatal(err)
	}
	id := ChannelID(in.ChannelID)
	post(t, m, id, "deal 1")
	stale := m.svc.chans[id].log.State().HeadRecord
	for i := 2; i <= 5; i++ {
		post(t, m, id, fmt.Sprintf("deal %d", i))
	}
	real := m.svc.chans[id].log.State().HeadRecord
	if h, _ := VerifyHead(real); h.Seq != 5 {
		t.Fatal("head not at 5")
	}
	key := HeadKey(id)
	thief := seededKey(66)
	otherChannel, _ := SignHead(thief, 999, bytes.Repeat([]byte{9}, 32), time.Now(), 9) // another key's head, high seq
	var forgedSig []byte                                                                // the real key's head, seq 999, bad signature
	{
		h, _ := SignHead(thief, 999, bytes.Repeat([]byte{9}, 32), time.Now(), 9)
		forged := bytes.Clone(h.Raw)
		copy(forged[bytes.Index(forged, thief.Public().(ed25519.PublicKey)):], m.priv(id).Public().(ed25519.PublicKey))
		forgedSig = forged
	}
	if (HeadValidator{}).Validate(key, forgedSig) == nil || (HeadValidator{}).Validate(key, otherChannel.Raw) == nil {
		t.Fatal("the forged records must be invalid")
	}
	bad := [][]byte{stale, stale, otherChannel.Raw, forgedSig}

	// Grind identities until four are closer to the key than any honest node, and run them as hostile servers.
	target := kb.ConvertKey(key)
	type cand struct {
		id   *identity.Identity
		dist []byte
	}
	var honestBest []byte
	for _, nd := range nodes {
		if d := kb.Xor(kb.ConvertPeerID(nd.h.ID()), target); honestBest == nil || bytes.Compare(d, honestBest) < 0 {
			honestBest = d
		}
	}
	var cands []cand
	for len(cands) < 4 {
		idn, err := identity.New("sybil")
		if err != nil {
			t.Fatal(err)
		}
		if d := kb.Xor(kb.ConvertPeerID(idn.PeerID()), target); bytes.Compare(d, honestBest) < 0 {
			cands = append(cands, cand{idn, d})
		}
	}
	var hostile []peer.ID
	for i, c := range cands[:4] {
		h, err := mn.AddPeer(c.id.HostKey(), mustAddr(fmt.Sprintf("/ip4/10.0.1.%d/tcp/4040", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		store := dssync.MutexWrap(ds.NewMapDatastore())
		kad, err := dht.New(h, dht.ProtocolPrefix("/madang"), dht.Mode(dht.ModeServer), dht.Datastore(store),
			dht.NamespacedValidator(HeadNamespace, hostileValidator{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kad.Close() })
		plant(t, store, key, bad[i])
		hostile = append(hostile, h.ID())
	}
	for _, nd := range nodes {
		if kb.Closer(nd.h.ID(), hostile[3], key) {
			t.Fatalf("honest node %s is closer to the key than a sybil", nd.h.ID())
		}
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return reader.kad.RoutingTable().Size() >= 8 }, "reader routing table")
	// Honest answers reach the reader late (30 ms links), the sybils' at once: the real head must win on
	// its seq, not on arriving first.
	for _, nd := range nodes[:4] {
		for _, l := range mn.LinksBetweenPeers(reader.h.ID(), nd.h.ID()) {
			l.SetOptions(mocknet.LinkOptions{Latency: 30 * time.Millisecond})
		}
	}
	// The merchant republishes; the sybils keep what was planted.
	m.svc.publishChannel(t.Context(), m.svc.chans[id])

	for round := range 5 {
		// The reader is a DHT server too and got the real record from the merchant: forget it, so that the
		// answer comes from the network, the sybils' first (they are the closest).
		if err := reader.st.Datastore("dht").Delete(t.Context(), dsKey(key)); err != nil {
			t.Fatal(err)
		}
		h, err := reader.svc.resolveHead(t.Context(), id)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if h.Seq != 5 || !bytes.Equal(h.Raw, real) {
			t.Fatalf("round %d: resolved seq %d, want the real head at 5", round, h.Seq)
		}
	}
	// The reader follows and syncs the whole feed.
	if _, err := reader.svc.Follow(t.Context(), string(id), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := seqOf(reader, id); got != 5 {
		t.Fatalf("reader at %d", got)
	}

	// Now the reader can reach only the sybils: the DHT answers with the stale record, which the reader
	// does not take over the head it knows.
	for _, nd := range nodes[:4] {
		_ = mn.UnlinkPeers(reader.h.ID(), nd.h.ID())
		_ = mn.DisconnectPeers(reader.h.ID(), nd.h.ID())
	}
	if err := reader.st.Datastore("dht").Delete(t.Context(), dsKey(key)); err != nil {
		t.Fatal(err)
	}
	l, _ := reader.svc.Log(id)
	h, err := reader.svc.resolveHead(t.Context(), id)
	if err != nil || h.Seq != 1 {
		t.Fatalf("with only sybils reachable the DHT should answer with the stale head: %v", err)
	}
	if newer, _ := l.NoteHead(h); newer {
		t.Fatal("a stale head replaced a newer one")
	}
	st := l.State()
	if st.Target != 5 || !bytes.Equal(st.HeadRecord, real) {
		t.Fatalf("reader's head went back: target %d", st.Target)
	}
}
