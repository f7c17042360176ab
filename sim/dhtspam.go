package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/madang-p2p/madang/protocols/directory"
	dirpb "github.com/madang-p2p/madang/protocols/directory/pb"
)

// dhtSpammers are hostile DHT servers: each announces itself as a provider of every key looked up, and
// (in the Madang run) answers directory requests badly: even-numbered ones with well-formed cards signed
// by throwaway keys, odd-numbered ones not at all (they hold the stream open until the asker gives up).
type dhtSpammers struct {
	prefix    string // DHT protocol prefix of the run ("" = the library's default)
	directory bool   // serve the directory protocol (Madang run)
	mu        sync.Mutex
	dhts      []*dht.IpfsDHT
	forged    atomic.Int64 // directory requests answered with forged cards
	stalled   atomic.Int64 // directory requests left unanswered
}

// add is a netOpts.extra for hostile host i.
func (s *dhtSpammers) add(ctx context.Context, i int, h host.Host) error {
	opts := []dht.Option{dht.Mode(dht.ModeServer)}
	if s.prefix != "" {
		opts = append(opts, dht.ProtocolPrefix(protocol.ID(s.prefix)))
	}
	d, err := dht.New(h, opts...)
	if err != nil {
		return fmt.Errorf("spammer dht: %w", err)
	}
	context.AfterFunc(ctx, func() { _ = d.Close() })
	s.mu.Lock()
	k := len(s.dhts)
	s.dhts = append(s.dhts, d)
	s.mu.Unlock()
	if s.directory {
		stall := k%2 == 1
		h.SetStreamHandler(directory.ProtocolID, func(st network.Stream) {
			if stall {
				s.stalled.Add(1)
			} else {
				s.forged.Add(1)
			}
			spamDirectory(ctx, st, stall)
		})
	}
	return nil
}

// provide announces every spammer as a provider of every key; the DHT stores them beside the honest
// providers.
func (s *dhtSpammers) provide(ctx context.Context, cids []cid.Cid) error {
	s.mu.Lock()
	dhts := append([]*dht.IpfsDHT(nil), s.dhts...)
	s.mu.Unlock()
	if len(dhts) == 0 {
		return nil
	}
	refreshDHT(ctx, dhts)
	var wg sync.WaitGroup
	errs := make([]error, len(dhts)*len(cids))
	for a, d := range dhts {
		for b, c := range cids {
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, directory.ProvideTimeout)
				defer cancel()
				errs[a*len(cids)+b] = d.Provide(pctx, c, true)
			})
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("spammer provide: %w", err)
		}
	}
	return nil
}

// spamDirectory answers one directory request: forged cards, or (stall) nothing until the asker resets
// the stream or the run ends.
func spamDirectory(ctx context.Context, st network.Stream, stall bool) {
	defer st.Close()
	var req dirpb.Request
	_ = st.SetReadDeadline(time.Now().Add(directory.StreamTimeout))
	if err := pbio.NewDelimitedReader(st, 4096).ReadMsg(&req); err != nil {
		_ = st.Reset()
		return
	}
	if stall { // the asker has closed its side; hold ours open and silent
		t := time.NewTimer(2 * directory.StreamTimeout)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		_ = st.Reset()
		return
	}
	resp := &dirpb.Response{}
	for k := range 5 {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		card := SignCard(priv, fmt.Sprintf("forged-%d", k), time.Now())
		card[len(card)-1] ^= 0xff // a broken signature
		resp.Cards = append(resp.Cards, &dirpb.Card{Kind: CardKind, Raw: card})
	}
	_ = st.SetWriteDeadline(time.Now().Add(directory.StreamTimeout))
	_ = pbio.NewDelimitedWriter(st).WriteMsg(resp)
}
