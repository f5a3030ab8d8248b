package codec

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"go.temporal.io/sdk/converter"
)

// ServerOptions configure the codec server.
type ServerOptions struct {
	// Token is what callers send as "Authorization: Bearer Token" (the Web
	// UI's "pass access token" or `temporal --codec-auth`).
	Token string
	// Origins are the Web UI origins whose browsers may call the server.
	Origins []string
}

// Handler serves POST /encode and /decode (the Temporal codec server
// protocol) to callers holding the token, and the CORS preflight the
// Web UI's browser sends first.
func Handler(c *Codec, opts ServerOptions) http.Handler {
	codec := converter.NewPayloadCodecHTTPHandler(c)
	want := []byte("Bearer " + opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && slices.Contains(opts.Origins, origin) {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
			w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			w.Header().Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		got := []byte(r.Header.Get("Authorization"))
		if !strings.HasPrefix(string(got), "Bearer ") {
			// `temporal --codec-auth TOKEN` sends the token as it is.
			got = append([]byte("Bearer "), got...)
		}
		if opts.Token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="svcupdate codec"`)
			http.Error(w, "codec server: Authorization: Bearer <CODEC_AUTH_TOKEN> required", http.StatusUnauthorized)
			return
		}
		codec.ServeHTTP(w, r)
	})
}
