package sim

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func TestCardRoundTrip(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	now := time.UnixMilli(time.Now().UnixMilli())
	raw := SignCard(priv, "card-1", now)
	id, upd, err := VerifyCard(raw)
	if err != nil || !upd.Equal(now) || id[len(id)-7:] != "/card-1" {
		t.Fatalf("verify: %q %v %v", id, upd, err)
	}
	for i := range raw {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 1
		if _, _, err := VerifyCard(bad); !errors.Is(err, ErrBadCard) {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	if _, _, err := VerifyCard(raw[:len(raw)-1]); !errors.Is(err, ErrBadCard) {
		t.Fatal("truncated card accepted")
	}
}

func FuzzVerifyCard(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	f.Add(SignCard(priv, "x", time.Unix(1, 0)))
	f.Add(SignCard(priv, "", time.Unix(0, 0)))
	f.Add([]byte{})
	f.Add(make([]byte, 105))
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, _, err := VerifyCard(raw)
		if err == nil && id == "" {
			t.Fatal("valid card without id")
		}
	})
}
