package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/devtest"
	"github.com/svcupdate/svcupdate/internal/testkit"
	"github.com/svcupdate/svcupdate/workflows"
)

func randomKey(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(key)
}

// codecClient is a client configured like the programs, from the test's
// environment: TLS to the front, the codec of PAYLOAD_KEYS.
func codecClient(t *testing.T) (client.Client, converter.DataConverter) {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	options, err := cfg.ClientOptions()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(options)
	if err != nil {
		t.Fatalf("dial Temporal over TLS: %v", err)
	}
	t.Cleanup(c.Close)
	return c, options.DataConverter
}

// TestTLSAndEncryptedPayloads runs the worker and the starter against a
// Temporal reachable only through mTLS (a test CA), with PAYLOAD_KEYS set:
// the raw history holds no admin address, a client with the keys reads
// the update as before, the codec server decodes for a caller with its
// token, and after a key rotation the older history still reads.
func TestTLSAndEncryptedPayloads(t *testing.T) {
	testkit.ClearConfigEnv(t)
	plain, _ := devtest.StartForPrograms(t)
	front := testkit.StartTLSFront(t, os.Getenv("TEMPORAL_ADDRESS"))
	oldKey, newKey := "k1:"+randomKey(t), "k2:"+randomKey(t)
	for name, value := range map[string]string{
		"TEMPORAL_ADDRESS":                 front.Address,
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH": front.CAPath,
		"TEMPORAL_TLS_CLIENT_CERT_PATH":    front.ClientCert,
		"TEMPORAL_TLS_CLIENT_KEY_PATH":     front.ClientKey,
		"PAYLOAD_KEYS":                     oldKey,
		"MIN_NOTICE":                       "0s",
		"UPDATE_WINDOW":                    updateWindow.String(),
		"SECONDARY_MIN_GAP":                secondaryGap.String(),
		"REMINDER_OFFSETS":                 reminderOffset.String() + ",0s",
		"RESCHEDULE_MIN_NOTICE":            "0s",
		"CONNECT_TIMEOUT":                  "30s",
	} {
		t.Setenv(name, value)
	}
	metricsAddr, codecAddr := testkit.FreeAddress(t), testkit.FreeAddress(t)
	const token = "codec-test-token"
	workerEnv := []string{"METRICS_ADDR=" + metricsAddr, "CODEC_ADDR=" + codecAddr, "CODEC_AUTH_TOKEN=" + token,
		"CODEC_CORS_ORIGINS=http://localhost:8233", "WORKER_STOP_TIMEOUT=1s", "EXECUTOR_STOP_TIMEOUT=1s"}
	first := startWorker(t, workerEnv)
	first.waitUntilPolling(t, plain)
	testkit.WaitFor(t, 30*time.Second, "/readyz to answer 200", func() (bool, string) {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})

	mustRun(t, "migrate")
	mustRun(t, "setup")
	in := testFleet()[0]
	schedule := newCalendar(time.Now())
	fleetPath := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, fleetPath, string(schedule.fleetFile(t, []fleetInstance{in})))
	mustRun(t, "load", fleetPath)
	if out := mustRun(t, "rollout", "--version", targetVersion); !strings.Contains(out, "started 1,") {
		t.Fatalf("rollout:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := workflows.WorkflowID(in.id, targetVersion)
	secure, secureData := codecClient(t)
	testkit.WaitFor(t, time.Minute, "the scheduled notice sent, read through the codec", func() (bool, string) {
		view, err := tryQueryStatus(ctx, secure, id)
		if err != nil {
			return false, err.Error()
		}
		return view.InstanceID == in.id && len(view.Notices) > 0, "status without notices yet"
	})

	people := slices.Concat(in.admins, in.users, in.extra)
	var raw bytes.Buffer
	var input *commonpb.Payloads
	events := plain.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for events.HasNext() {
		event, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		if started := event.GetWorkflowExecutionStartedEventAttributes(); started != nil {
			input = started.GetInput()
		}
		// The wire form: payload bytes as they are (JSON would show them
		// in base64).
		wire, err := proto.Marshal(event)
		if err != nil {
			t.Fatal(err)
		}
		raw.Write(wire)
	}
	for _, address := range people {
		if strings.Contains(raw.String(), address) {
			t.Errorf("the raw history shows %s in clear text", address)
		}
	}
	if input == nil {
		t.Fatal("no workflow input in the history")
	}
	readsAdmins := func(data converter.DataConverter, keys string) {
		t.Helper()
		var decoded workflows.Input
		if err := data.FromPayloads(input, &decoded); err != nil || !slices.Equal(decoded.Admins, in.admins) {
			t.Errorf("the input read with %s: admins %v, %v; want %v", keys, decoded.Admins, err, in.admins)
		}
	}
	readsAdmins(secureData, "the key")

	// The codec server, as the Web UI and temporal --codec-endpoint call it.
	body, err := protojson.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	decode := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+codecAddr+"/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", "default")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var decoded commonpb.Payloads
		var out bytes.Buffer
		_, _ = out.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, out.String()
		}
		if err := protojson.Unmarshal(out.Bytes(), &decoded); err != nil {
			t.Fatalf("codec server answer %s: %v", out.String(), err)
		}
		var text strings.Builder
		for _, p := range decoded.GetPayloads() {
			text.Write(p.GetData())
		}
		return resp.StatusCode, text.String()
	}
	if status, _ := decode(""); status != http.StatusUnauthorized {
		t.Errorf("codec server without the token: %d, want 401", status)
	}
	if status, text := decode("Bearer " + token); status != http.StatusOK || !strings.Contains(text, in.admins[0]) {
		t.Errorf("codec server with the token: %d %s", status, text)
	}

	// Rotation: a worker with a new first key still replays the history the
	// old key sealed, and a client with both keys reads its answer.
	first.stop(t)
	t.Setenv("PAYLOAD_KEYS", newKey+","+oldKey)
	second := startWorker(t, workerEnv)
	second.waitUntilPolling(t, plain)
	rotated, rotatedData := codecClient(t)
	testkit.WaitFor(t, time.Minute, "the status through the rotated keys", func() (bool, string) {
		view, err := tryQueryStatus(ctx, rotated, id)
		if err != nil {
			return false, err.Error()
		}
		return view.InstanceID == in.id, "another instance's status"
	})
	readsAdmins(rotatedData, "the rotated keys")
	if !strings.Contains(second.log(), "version=") {
		t.Errorf("the worker does not log its version at start:\n%s", second.log())
	}
}
