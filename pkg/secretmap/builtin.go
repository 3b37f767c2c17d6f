package secretmap

// builtinEntries is the default table: every row of ../shared/prefect-default-secrets.md (DESIGN.md
// §3). Secret keys: "token" for the git hosts, "value" for other strings, the dict's own keys for dicts.
var builtinEntries = []Entry{
	{
		Name: "AWS_CREDENTIALS", Shape: ShapeDict,
		Description: "utilities/aws.py get_boto_client; boto3's own env chain",
		Keys:        []Key{{Name: "ACCESS_KEY"}, {Name: "SECRET_ACCESS_KEY"}, {Name: "SESSION_TOKEN", Optional: true}},
		Native: Native{Env: []EnvVar{
			{Name: "AWS_ACCESS_KEY_ID", Key: "ACCESS_KEY"},
			{Name: "AWS_SECRET_ACCESS_KEY", Key: "SECRET_ACCESS_KEY"},
			{Name: "AWS_SESSION_TOKEN", Key: "SESSION_TOKEN"},
		}},
	},
	{
		Name: "GCP_CREDENTIALS", Shape: ShapeJSON,
		Description: "utilities/gcp.py get_google_client; google-auth reads GOOGLE_APPLICATION_CREDENTIALS",
		Keys:        []Key{{Name: "credentials.json"}},
		Native:      Native{Files: []File{{Key: "credentials.json", Env: "GOOGLE_APPLICATION_CREDENTIALS"}}},
	},
	gitToken("GITHUB_ACCESS_TOKEN", "storage/github.py (context, then env)"),
	gitToken("GITLAB_ACCESS_TOKEN", "storage/gitlab.py (context, then env)"),
	gitToken("BITBUCKET_ACCESS_TOKEN", "storage/bitbucket.py (context, then env)"),
	stringSecret("AZURE_STORAGE_CONNECTION_STRING", "storage/azure.py, engine/results/azure_result.py", true),
	stringSecret("AZ_CONNECTION_STRING", "tasks/azure/blobstorage.py", false),
	{
		// The keys depend on the task (Blob storage: ACCOUNT_NAME with ACCOUNT_KEY or SAS_TOKEN;
		// azure-identity: tenant, client id and secret), so every key is optional.
		Name: "AZ_CREDENTIALS", Shape: ShapeDict,
		Description: "tasks/azure/*, tasks/azureml/datastore.py; azure-identity's env chain",
		Keys: []Key{
			{Name: "ACCOUNT_NAME", Optional: true}, {Name: "ACCOUNT_KEY", Optional: true}, {Name: "SAS_TOKEN", Optional: true},
			{Name: "AZURE_TENANT_ID", Optional: true}, {Name: "AZURE_CLIENT_ID", Optional: true}, {Name: "AZURE_CLIENT_SECRET", Optional: true},
		},
		Native: Native{Env: []EnvVar{
			{Name: "AZURE_TENANT_ID", Key: "AZURE_TENANT_ID"},
			{Name: "AZURE_CLIENT_ID", Key: "AZURE_CLIENT_ID"},
			{Name: "AZURE_CLIENT_SECRET", Key: "AZURE_CLIENT_SECRET"},
		}},
	},
	stringSecret("KUBERNETES_API_KEY", "utilities/kubernetes.py, tasks/kubernetes/*", false),
	{
		// Three ways to log in to Vault, each with its own keys: every key is optional.
		Name: "VAULT_CREDENTIALS", Shape: ShapeDict,
		Description: "tasks/secrets/vault_secret.py; the vault CLI reads VAULT_TOKEN",
		Keys: []Key{
			{Name: "VAULT_TOKEN", Optional: true},
			{Name: "VAULT_ROLE_ID", Optional: true}, {Name: "VAULT_SECRET_ID", Optional: true},
			{Name: "VAULT_KUBE_AUTH_ROLE", Optional: true}, {Name: "VAULT_KUBE_AUTH_PATH", Optional: true},
			{Name: "VAULT_KUBE_TOKEN_FILE", Optional: true},
		},
		Native: Native{Env: []EnvVar{{Name: "VAULT_TOKEN", Key: "VAULT_TOKEN"}}},
	},
	stringSecret("SLACK_WEBHOOK_URL", "tasks/notifications/slack_task.py, utilities/notifications", false),
	stringSecret("EMAIL_USERNAME", "tasks/notifications/email_task.py", false),
	stringSecret("EMAIL_PASSWORD", "tasks/notifications/email_task.py", false),
	{
		Name: "JIRASECRETS", Shape: ShapeDict,
		Description: "tasks/jira/*, jira notifications",
		Keys:        []Key{{Name: "JIRAUSER"}, {Name: "JIRATOKEN"}, {Name: "JIRASERVER"}},
	},
	{
		Name: "SNOWFLAKE_CREDS", Shape: ShapeDict,
		Description: "utilities/notifications (snowflake logger)",
		Keys: []Key{
			{Name: "user"}, {Name: "password"}, {Name: "account"},
			{Name: "role", Optional: true}, {Name: "warehouse", Optional: true}, {Name: "private_key", Optional: true},
		},
	},
	stringSecret("REDIS_PASSWORD", "tasks/redis", false),
	stringSecret("PUSHBULLET_TOKEN", "tasks/notifications/pushbullet_task.py", false),
}

// gitToken is a git host's access token: key "token", and the same name as a native env var,
// which is Prefect's own env fallback in its git storage classes.
func gitToken(name, usedBy string) Entry {
	return Entry{
		Name: name, Shape: ShapeString, Description: usedBy,
		Keys:   []Key{{Name: "token"}},
		Native: Native{Env: []EnvVar{{Name: name, Key: "token"}}},
	}
}

// stringSecret is a string from key "value"; sameNameNative also sets an env var of the same name,
// for names that the library underneath reads from the environment by default.
func stringSecret(name, usedBy string, sameNameNative bool) Entry {
	e := Entry{Name: name, Shape: ShapeString, Description: usedBy, Keys: []Key{{Name: CustomKey}}}
	if sameNameNative {
		e.Native.Env = []EnvVar{{Name: name, Key: CustomKey}}
	}
	return e
}

// Builtin returns the built-in map. It is validated by the package's tests, so building it never fails.
func Builtin() *Map {
	m, err := build(nil)
	if err != nil {
		panic("secretmap: built-in table is invalid: " + err.Error()) // caught by TestBuiltinIsValid
	}
	return m
}
