// Package codec encrypts what svcupdate stores in Temporal (workflow inputs,
// results, Update and query payloads, heartbeats, failure messages) with
// AES-256-GCM, so admin e-mail addresses, names and executor output never
// sit in clear text in a history. Worker, starter and portal build their
// clients with Converters; operators read histories through Handler, the
// codec server.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

const (
	// Encoding marks a payload this codec encrypted; its data is the nonce
	// followed by the sealed payload (the original, metadata and all).
	Encoding = "binary/encrypted-aes256gcm"
	// metadataKeyID names the key that sealed a payload, so a rotated
	// worker still opens what an older key sealed.
	metadataKeyID = "encryption-key-id"
	keyBytes      = 32
)

// Key is one AES-256 key and the ID stored beside what it sealed.
type Key struct {
	ID     string
	Secret []byte
}

// Keys are the keys of PAYLOAD_KEYS: the first seals, every one opens.
type Keys []Key

// ParseKeys reads "id:base64,id:base64", the newest key first (the form of
// the action keys, ACTION_TRUSTED_KEYS).
func ParseKeys(value string) (Keys, error) {
	var keys Keys
	seen := map[string]bool{}
	for item := range strings.SplitSeq(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, encoded, ok := strings.Cut(item, ":")
		id = strings.TrimSpace(id)
		if !ok || id == "" {
			return nil, fmt.Errorf("item %d is not id:base64", len(keys)+1)
		}
		if seen[id] {
			return nil, fmt.Errorf("key ID %q is given twice", id)
		}
		secret, err := decodeBase64(strings.TrimSpace(encoded))
		if err != nil || len(secret) != keyBytes {
			return nil, fmt.Errorf("key %q is not %d bytes in base64", id, keyBytes)
		}
		seen[id] = true
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return keys, nil
}

// decodeBase64 reads standard (openssl rand -base64 32) or URL-safe base64,
// padded or not.
func decodeBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// LogValue names the keys, never their bytes.
func (k Keys) LogValue() slog.Value {
	if len(k) == 0 {
		return slog.StringValue("none (payloads in clear)")
	}
	ids := make([]string, len(k))
	for i, key := range k {
		ids[i] = key.ID
	}
	return slog.StringValue("encrypting with " + ids[0] + ", decrypting " + strings.Join(ids, ","))
}

// Codec is the AES-256-GCM payload codec.
type Codec struct {
	sealID string
	aeads  map[string]cipher.AEAD
}

// New builds the codec of keys; at least one is needed.
func New(keys Keys) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("no payload key")
	}
	c := &Codec{sealID: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, key := range keys {
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return nil, fmt.Errorf("payload key %s: %w", key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("payload key %s: %w", key.ID, err)
		}
		c.aeads[key.ID] = aead
	}
	return c, nil
}

// Encode implements converter.PayloadCodec.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.sealID]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encrypting a payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return nil, err
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				metadataKeyID:              []byte(c.sealID),
			},
			// The key ID is authenticated too: a payload cannot be passed
			// off as sealed by another key.
			Data: aead.Seal(nonce, nonce, plain, []byte(c.sealID)),
		}
	}
	return out, nil
}

// Decode implements converter.PayloadCodec. Payloads this codec did not
// seal (histories written before encryption was turned on) pass unchanged.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[metadataKeyID])
		aead, ok := c.aeads[id]
		if !ok {
			return nil, fmt.Errorf("payload encrypted with key %q, which PAYLOAD_KEYS does not hold", id)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize() {
			return nil, fmt.Errorf("payload encrypted with key %q is too short", id)
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("payload encrypted with key %q does not open: %w", id, err)
		}
		decoded := &commonpb.Payload{}
		if err := proto.Unmarshal(plain, decoded); err != nil {
			return nil, fmt.Errorf("payload encrypted with key %q: %w", id, err)
		}
		out[i] = decoded
	}
	return out, nil
}

// Converters returns the data and failure converters of a client: with
// keys, payloads and failure messages and stack traces are encrypted;
// without, the SDK's defaults.
func Converters(keys Keys) (converter.DataConverter, converter.FailureConverter, error) {
	if len(keys) == 0 {
		return converter.GetDefaultDataConverter(), temporal.GetDefaultFailureConverter(), nil
	}
	c, err := New(keys)
	if err != nil {
		return nil, nil, err
	}
	data := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
	failures := temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          data,
		EncodeCommonAttributes: true,
	})
	return data, failures, nil
}
