package sim

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	dmpb "github.com/madang-p2p/madang/protocols/dm/pb"
)

// dmSpammers are hostile peers that, while the direct phase runs, open streams to the receivers on the
// run's DM protocol and write junk: in the Madang run a well-formed batch with a forged payload (a made-up
// sender key and random ciphertext) for the receiver's account, in the raw run a well-formed frame.
// A stream counts as accepted when the receiver answers anything.
type dmSpammers struct {
	proto     protocol.ID
	mu        sync.Mutex
	hosts     []host.Host
	targets   []peer.ID // receivers' peer IDs
	accounts  [][]byte  // their account keys (Madang run)
	attempted atomic.Int64
	accepted  atomic.Int64
}

// add is a netOpts.extra for hostile host i.
func (s *dmSpammers) add(_ context.Context, _ int, h host.Host) error {
	s.mu.Lock()
	s.hosts = append(s.hosts, h)
	s.mu.Unlock()
	return nil
}

// run keeps every spammer busy (spamRate streams a second each, round robin over the targets) until ctx
// ends; it returns when they all stopped.
func (s *dmSpammers) run(ctx context.Context) {
	s.mu.Lock()
	hosts := append([]host.Host(nil), s.hosts...)
	s.mu.Unlock()
	if len(s.targets) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			spamLoop(ctx, func(k int) error {
				t := k % len(s.targets)
				var acct []byte
				if t < len(s.accounts) {
					acct = s.accounts[t]
				}
				s.attempt(ctx, h, s.targets[t], acct, k)
				return nil
			})
		})
	}
	wg.Wait()
}

func (s *dmSpammers) attempt(ctx context.Context, h host.Host, to peer.ID, account []byte, k int) {
	s.attempted.Add(1)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := h.NewStream(sctx, to, s.proto)
	if err != nil {
		return
	}
	defer st.Close()
	stop := context.AfterFunc(sctx, func() { _ = st.Reset() }) // mocknet streams ignore deadlines
	defer stop()
	if account != nil {
		sender, junk := make([]byte, 32), make([]byte, 300)
		_, _ = rand.Read(sender)
		_, _ = rand.Read(junk)
		p := &dmpb.Payload{Version: 1, Sender: sender, Recipient: account, Kind: &dmpb.Payload_Message{Message: &dmpb.Sealed{Ratchet: junk}}}
		raw, err := proto.Marshal(p)
		if err != nil {
			return
		}
		if err := pbio.NewDelimitedWriter(st).WriteMsg(&dmpb.Batch{Payloads: [][]byte{raw}}); err != nil {
			return
		}
	} else {
		msg := []byte(fmt.Sprintf("spam%04d junk from a stranger", k%10000))
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
		if _, err := st.Write(append(frame, msg...)); err != nil {
			return
		}
	}
	_ = st.CloseWrite()
	buf := make([]byte, 1)
	if n, _ := st.Read(buf); n > 0 {
		s.accepted.Add(1)
	}
}

// during runs the spammers until the returned function is called, which waits for them to stop.
func (s *dmSpammers) during(ctx context.Context) func() {
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.run(sctx) }()
	return func() { cancel(); <-done }
}
