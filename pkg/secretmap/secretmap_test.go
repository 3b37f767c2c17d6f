package secretmap

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBuiltinCoversEveryDefaultName checks the table against prefect-default-secrets.md's rows.
func TestBuiltinCoversEveryDefaultName(t *testing.T) {
	want := []string{
		"AWS_CREDENTIALS", "GCP_CREDENTIALS", "GITHUB_ACCESS_TOKEN", "GITLAB_ACCESS_TOKEN", "BITBUCKET_ACCESS_TOKEN",
		"AZURE_STORAGE_CONNECTION_STRING", "AZ_CONNECTION_STRING", "AZ_CREDENTIALS", "KUBERNETES_API_KEY",
		"VAULT_CREDENTIALS", "SLACK_WEBHOOK_URL", "EMAIL_USERNAME", "EMAIL_PASSWORD", "JIRASECRETS",
		"SNOWFLAKE_CREDS", "REDIS_PASSWORD", "PUSHBULLET_TOKEN",
	}
	m := Builtin()
	for _, name := range want {
		if _, ok := m.Lookup(name); !ok {
			t.Errorf("built-in map lacks %s", name)
		}
	}
	if got := len(m.Names()); got != len(want) {
		t.Errorf("built-in map has %d names, the documented list %d: %v", got, len(want), m.Names())
	}
}

func TestBuiltinEntries(t *testing.T) {
	m := Builtin()
	tests := []struct {
		name, secret string
		shape        Shape
		keys         string // name, optional ones with '?'
		nativeEnv    string
	}{
		{"AWS_CREDENTIALS", "aws-credentials", ShapeDict, "ACCESS_KEY SECRET_ACCESS_KEY SESSION_TOKEN?", "AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN"},
		{"GCP_CREDENTIALS", "gcp-credentials", ShapeJSON, "credentials.json", ""},
		{"GITHUB_ACCESS_TOKEN", "github-access-token", ShapeString, "token", "GITHUB_ACCESS_TOKEN"},
		{"AZURE_STORAGE_CONNECTION_STRING", "azure-storage-connection-string", ShapeString, "value", "AZURE_STORAGE_CONNECTION_STRING"},
		{"SLACK_WEBHOOK_URL", "slack-webhook-url", ShapeString, "value", ""},
		{"SNOWFLAKE_CREDS", "snowflake-creds", ShapeDict, "user password account role? warehouse? private_key?", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := m.Lookup(tt.name)
			if !ok {
				t.Fatal("missing")
			}
			var keys, env []string
			for _, k := range e.Keys {
				s := k.Name
				if k.Optional {
					s += "?"
				}
				keys = append(keys, s)
			}
			for _, v := range e.Native.Env {
				env = append(env, v.Name)
			}
			if e.SecretName != tt.secret || e.Shape != tt.shape || strings.Join(keys, " ") != tt.keys || strings.Join(env, " ") != tt.nativeEnv {
				t.Errorf("got secret=%s shape=%s keys=%q env=%q", e.SecretName, e.Shape, keys, env)
			}
		})
	}
	gcp, _ := m.Lookup("GCP_CREDENTIALS")
	if len(gcp.Native.Files) != 1 || gcp.Native.Files[0].Env != "GOOGLE_APPLICATION_CREDENTIALS" ||
		MountDir("GCP_CREDENTIALS") != "/var/run/secrets/flowauth/gcp-credentials" {
		t.Errorf("GCP file layer: %+v in %s", gcp.Native.Files, MountDir("GCP_CREDENTIALS"))
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name, wantErr string
	}{
		{"AWS_CREDENTIALS", ""},
		{"A", ""},
		{"X9_Y", ""},
		{"", "is empty"},
		{"aws_credentials", "must match"},
		{"9LIVES", "must match"},
		{"FOO__BAR", `must not contain "__"`},
		{"FOO_", `must not end with "_"`},
		{"FOO-BAR", "must match"},
		{"FOO/../BAR", "must match"},
		{"FOO\nBAR", "must match"},
		{"ÄWS", "must match"},
		{strings.Repeat("A", 64), "64 characters long"},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidateName(%q) = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestParseExtendsAndOverrides(t *testing.T) {
	m, err := Parse([]byte(`
apiVersion: flowauth.io/v1alpha1
kind: SecretMap
secrets:
  DBT_CLOUD:
    shape: dict
    keys: [{name: ACCOUNT_ID}, {name: TOKEN}]
    native:
      env: [{name: DBT_CLOUD_API_TOKEN, key: TOKEN}]
  GITHUB_ACCESS_TOKEN:
    secretName: github-bot
    shape: string
    keys: [{name: pat}]
    native:
      env: [{name: GH_TOKEN, key: pat}]
      files: [{key: pat, env: GH_TOKEN_FILE}]
`))
	if err != nil {
		t.Fatal(err)
	}
	dbt, ok := m.Lookup("DBT_CLOUD")
	if !ok || dbt.SecretName != "dbt-cloud" || len(dbt.Keys) != 2 {
		t.Errorf("DBT_CLOUD = %+v, %v", dbt, ok)
	}
	gh, _ := m.Lookup("GITHUB_ACCESS_TOKEN")
	if gh.SecretName != "github-bot" || gh.Keys[0].Name != "pat" || gh.Native.Env[0].Name != "GH_TOKEN" {
		t.Errorf("override not applied wholesale: %+v", gh)
	}
	if _, ok := m.Lookup("AWS_CREDENTIALS"); !ok {
		t.Error("built-in entries must stay")
	}
}

// TestParseRejects: every invalid file is rejected whole, and the error names the entry and field.
func TestParseRejects(t *testing.T) {
	head := "apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n"
	tests := []struct {
		name, body, want string
	}{
		{"unknown field", "  X:\n    shape: string\n    keys: [{name: value}]\n    secretname: x\n", `unknown field "secrets.X.secretname"`},
		{"wrong kind", "", "apiVersion/kind must be"},
		{"bad name", "  my_token:\n    shape: string\n    keys: [{name: value}]\n", `entry "my_token": name "my_token" must match`},
		{"double underscore", "  MY__TOKEN:\n    shape: string\n    keys: [{name: value}]\n", `must not contain "__"`},
		{"bad shape", "  X:\n    shape: list\n    keys: [{name: value}]\n", `entry "X": field shape: "list" is not one of string, dict, json`},
		{"string with two keys", "  X:\n    shape: string\n    keys: [{name: a}, {name: b}]\n", `field keys: shape "string" takes exactly one key, got 2`},
		{"path in key", "  X:\n    shape: json\n    keys: [{name: ../../etc/passwd}]\n", `field keys[0].name: "../../etc/passwd" is not a valid Secret key`},
		{"dict key with dunder", "  X:\n    shape: dict\n    keys: [{name: A__B}]\n", `field keys[0].name: "A__B" cannot be a dict key`},
		{"duplicate key", "  X:\n    shape: dict\n    keys: [{name: A}, {name: A}]\n", `key "A" is listed twice`},
		{"env injection", "  X:\n    shape: string\n    keys: [{name: value}]\n    native: {env: [{name: \"A=B; rm -rf\", key: value}]}\n", `field native.env[0].name: "A=B; rm -rf" is not a valid environment variable name`},
		{"env collides with prefect layer", "  X:\n    shape: string\n    keys: [{name: value}]\n    native: {env: [{name: PREFECT__CONTEXT__SECRETS__Y, key: value}]}\n", "would collide with the prefect layer"},
		{"env from unknown key", "  X:\n    shape: string\n    keys: [{name: value}]\n    native: {env: [{name: X, key: other}]}\n", `field native.env[0].key: "other" is not one of the entry's keys`},
		{"file from unknown key", "  X:\n    shape: string\n    keys: [{name: value}]\n    native: {files: [{key: other}]}\n", `field native.files[0].key: "other" is not one of the entry's keys`},
		{"bad secret name", "  X:\n    secretName: Team_A\n    shape: string\n    keys: [{name: value}]\n", `field secretName: "Team_A" is not a valid Secret name`},
		{"volume name too long", "  " + strings.Repeat("A", 60) + ":\n    shape: string\n    keys: [{name: value}]\n    native: {files: [{key: value}]}\n", "derived from the entry's name is invalid"},
		{"duplicate entry", "  X:\n    shape: string\n    keys: [{name: value}]\n  X:\n    shape: string\n    keys: [{name: value}]\n", "already set in map"},
		{"not yaml", "  - [\n", "not a valid SecretMap document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := head + tt.body
			if tt.name == "wrong kind" {
				body = "apiVersion: v1\nkind: ConfigMap\n"
			}
			_, err := Parse([]byte(body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestStoreReloadKeepsOldMapOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "map.yaml")
	write := func(s string) {
		t.Helper()
		// Write then rename, as a ConfigMap volume swaps its files atomically.
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte("apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n"+s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("  ONE:\n    shape: string\n    keys: [{name: value}]\n")
	s, err := NewStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Map().Lookup("ONE"); !ok {
		t.Fatal("ONE missing after load")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan error, 10)
	go func() {
		_ = s.Watch(ctx, 50*time.Millisecond, func(changed bool, err error) { events <- err })
	}()
	next := func() error {
		t.Helper()
		select {
		case err := <-events:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("no reload reported")
			return nil
		}
	}

	write("  TWO:\n    shape: string\n    keys: [{name: value}]\n")
	if err := next(); err != nil {
		t.Fatalf("valid reload failed: %v", err)
	}
	if _, ok := s.Map().Lookup("TWO"); !ok {
		t.Fatal("TWO missing after reload")
	}

	write("  BAD__NAME:\n    shape: string\n    keys: [{name: value}]\n")
	if err := next(); err == nil || !strings.Contains(err.Error(), `entry "BAD__NAME"`) {
		t.Fatalf("invalid reload: err = %v", err)
	}
	if _, ok := s.Map().Lookup("TWO"); !ok {
		t.Fatal("the old map must stay in force after a rejected reload")
	}

	// Putting the file back as it was changes nothing in force, but ends the failure: it is
	// reported, or a "map rejected" state would outlive its cause.
	write("  TWO:\n    shape: string\n    keys: [{name: value}]\n")
	if err := next(); err != nil {
		t.Fatalf("the mended file: err = %v", err)
	}
}

func TestNewStoreRejectsInvalidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "map.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  x: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `entry "x"`) {
		t.Errorf("NewStore error = %v, want the path and the entry", err)
	}
}

// FuzzNameShapeMatchesThePattern: the hand-written check is exactly ^[A-Z][A-Z0-9_]*$.
func FuzzNameShapeMatchesThePattern(f *testing.F) {
	pattern := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	for _, s := range []string{"", "A", "a", "_A", "A_", "A1_B", "1A", "AÅ", "A\n", "A-B", "Z9", "@", "[", "`", "{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := isNameShaped(name), pattern.MatchString(name); got != want {
			t.Fatalf("isNameShaped(%q) = %v, the pattern says %v", name, got, want)
		}
	})
}
