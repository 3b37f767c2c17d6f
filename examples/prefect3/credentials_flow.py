"""A Prefect 3 flow that shows what its own libraries find of the credentials flowauth injected.

For each default secret name it is given, it asks the library a flow would use, as a flow would:
prefect-aws's AwsCredentials() and prefect-gcp's GcpCredentials() with no field set (so boto3's
and google-auth's own chains apply), and the environment for a token. It logs one line a name:

    AWS_CREDENTIALS found by prefect_aws.AwsCredentials(): boto3 credentials from env, access key sha256:0123456789abcdef, ...

A value is never logged: only the first 16 hex digits of its SHA-256, for a test (or a person who
knows the value) to compare. A name found by nothing fails the flow run, naming it.
"""
import hashlib
import os

from prefect import flow, get_run_logger

# Token-shaped names whose library fallback is an env var of the same name.
TOKENS = ("GITHUB_ACCESS_TOKEN", "GITLAB_ACCESS_TOKEN", "BITBUCKET_ACCESS_TOKEN", "SLACK_WEBHOOK_URL")


def digest(value):
    if isinstance(value, str):
        value = value.encode()
    return "sha256:" + hashlib.sha256(value).hexdigest()[:16]


def aws():
    from prefect_aws import AwsCredentials

    creds = AwsCredentials().get_boto3_session().get_credentials()
    if creds is None:
        return None
    frozen = creds.get_frozen_credentials()
    return "prefect_aws.AwsCredentials(): boto3 credentials from %s, access key %s, secret key %s" % (
        creds.method, digest(frozen.access_key), digest(frozen.secret_key))


def gcp():
    # GcpCredentials() with no key ends in google.auth.default(), which raises when nothing is
    # found; without GOOGLE_APPLICATION_CREDENTIALS it would ask a metadata server first.
    if not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return None
    from prefect_gcp import GcpCredentials

    block = GcpCredentials()
    creds = block.get_credentials_from_service_account()
    return "prefect_gcp.GcpCredentials(): %s, client_email %s, project %s, key file %s" % (
        type(creds).__name__, digest(getattr(creds, "service_account_email", "")), digest(block.project or ""),
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"])


def token(name):
    return "env %s %s" % (name, digest(os.environ[name])) if name in os.environ else None


@flow(name="flowauth-credentials")
def credentials(names: list[str] = ["AWS_CREDENTIALS", "GCP_CREDENTIALS", "GITHUB_ACCESS_TOKEN"]):
    logger = get_run_logger()
    missing = []
    for name in names:
        find = {"AWS_CREDENTIALS": aws, "GCP_CREDENTIALS": gcp}.get(name, lambda: token(name))
        found = find()
        if found:
            logger.info("%s found by %s", name, found)
        else:
            missing.append(name)
    if missing:
        raise RuntimeError("no credentials found for " + ", ".join(missing))
