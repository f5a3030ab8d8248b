package codec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
)

func newKey(t *testing.T, id string) Key {
	t.Helper()
	secret := make([]byte, keyBytes)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Secret: secret}
}

const admin = "fay.admin@fabrikam.example"

func TestEncryptedPayloadsHideTheirTextAndReadBack(t *testing.T) {
	data, _, err := Converters(Keys{newKey(t, "k1")})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := data.ToPayload(map[string]string{"admin": admin})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(payload.GetData(), []byte("fabrikam")) || string(payload.GetMetadata()[converter.MetadataEncoding]) != Encoding {
		t.Fatalf("encoded payload is not encrypted: %v", payload)
	}
	var back map[string]string
	if err := data.FromPayload(payload, &back); err != nil || back["admin"] != admin {
		t.Fatalf("decoded %v, %v", back, err)
	}
}

func TestRotationKeepsOldPayloadsReadable(t *testing.T) {
	old, current := newKey(t, "k1"), newKey(t, "k2")
	before, _, _ := Converters(Keys{old})
	sealed, err := before.ToPayload(admin)
	if err != nil {
		t.Fatal(err)
	}
	clear, err := converter.GetDefaultDataConverter().ToPayload(admin)
	if err != nil {
		t.Fatal(err)
	}
	after, _, _ := Converters(Keys{current, old})
	for name, p := range map[string]*commonpb.Payload{"sealed by the retired key": sealed, "written before encryption": clear} {
		var got string
		if err := after.FromPayload(p, &got); err != nil || got != admin {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	resealed, _ := after.ToPayload(admin)
	if id := string(resealed.GetMetadata()[metadataKeyID]); id != "k2" {
		t.Errorf("new payloads sealed with %q, want the first key k2", id)
	}
	retired, _, _ := Converters(Keys{current})
	var got string
	if err := retired.FromPayload(sealed, &got); err == nil || !strings.Contains(err.Error(), `key "k1"`) {
		t.Errorf("a payload of a dropped key: %v, want an error naming k1", err)
	}
}

func TestTamperedPayloadDoesNotOpen(t *testing.T) {
	data, _, _ := Converters(Keys{newKey(t, "k1")})
	p, _ := data.ToPayload(admin)
	p.Data[len(p.Data)-1] ^= 1
	var got string
	if err := data.FromPayload(p, &got); err == nil {
		t.Fatalf("a tampered payload decoded to %q", got)
	}
}

func TestFailureMessagesAreEncrypted(t *testing.T) {
	_, failures, _ := Converters(Keys{newKey(t, "k1")})
	failure := failures.ErrorToFailure(temporal.NewApplicationError("mail to "+admin+" bounced", "Bounce"))
	if strings.Contains(failure.GetMessage(), admin) || strings.Contains(failure.GetStackTrace(), admin) {
		t.Fatalf("failure carries the address in clear: %v", failure)
	}
	err := failures.FailureToError(failure)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), admin) {
		t.Fatalf("failure read back as %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	k := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, keyBytes))
	keys, err := ParseKeys(" k2:" + k + ", k1:" + k)
	if err != nil || len(keys) != 2 || keys[0].ID != "k2" || keys[1].ID != "k1" {
		t.Fatalf("ParseKeys = %v, %v", keys, err)
	}
	if keys.LogValue().String() != "encrypting with k2, decrypting k2,k1" {
		t.Errorf("LogValue = %s", keys.LogValue())
	}
	for value, want := range map[string]string{
		"k1":                   "not id:base64",
		"k1:" + k[:10]:         "not 32 bytes",
		"k1:" + k + ",k1:" + k: "given twice",
		":" + k:                "not id:base64",
	} {
		if _, err := ParseKeys(value); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseKeys(%q) = %v, want an error with %q", value, err, want)
		}
	}
}

func TestCodecServerNeedsTheTokenAndAnswersTheWebUI(t *testing.T) {
	c, err := New(Keys{newKey(t, "k1")})
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := c.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")}, Data: []byte(`"` + admin + `"`)}})
	body, _ := protojson.Marshal(&commonpb.Payloads{Payloads: sealed})
	server := httptest.NewServer(Handler(c, ServerOptions{Token: "s3cret", Origins: []string{"http://localhost:8233"}}))
	defer server.Close()

	post := func(auth string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, server.URL+"/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://localhost:8233")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, auth := range []string{"", "Bearer wrong"} {
		if resp := post(auth); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("decode with Authorization %q: %s, want 401", auth, resp.Status)
		}
	}
	for _, auth := range []string{"Bearer s3cret", "s3cret"} {
		resp := post(auth)
		var out bytes.Buffer
		_, _ = out.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(out.String(), base64.StdEncoding.EncodeToString([]byte(`"`+admin+`"`))) {
			t.Errorf("decode with Authorization %q: %s %s", auth, resp.Status, out.String())
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:8233" {
			t.Errorf("no CORS header for the Web UI: %v", resp.Header)
		}
	}

	preflight, _ := http.NewRequest(http.MethodOptions, server.URL+"/decode", nil)
	preflight.Header.Set("Origin", "http://localhost:8233")
	preflight.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-namespace")
	resp, err := http.DefaultClient.Do(preflight)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %s %v", resp.Status, resp.Header)
	}
	preflight.Header.Set("Origin", "http://evil.example")
	resp, _ = http.DefaultClient.Do(preflight)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("an unknown origin was allowed: %q", got)
	}
}

// BenchmarkRoundTrip seals and opens a payload of the size of a workflow
// input with a few admins (about 2 KB).
func BenchmarkRoundTrip(b *testing.B) {
	secret := bytes.Repeat([]byte{7}, keyBytes)
	c, err := New(Keys{{ID: "k1", Secret: secret}})
	if err != nil {
		b.Fatal(err)
	}
	payload := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")}, Data: bytes.Repeat([]byte("a"), 2048)}
	for b.Loop() {
		sealed, err := c.Encode([]*commonpb.Payload{payload})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Decode(sealed); err != nil {
			b.Fatal(err)
		}
	}
}
