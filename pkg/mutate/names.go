package mutate

// Annotation and label keys of DESIGN.md §2, in one place.
const (
	// AnnotationSecrets declares the default secret names a run needs (pod), or the namespace's
	// defaults (Namespace).
	AnnotationSecrets = "flowauth.io/secrets"
	// AnnotationContainers restricts injection to the named containers (init containers only
	// when named).
	AnnotationContainers = "flowauth.io/containers"
	// AnnotationInject chooses the layers: prefect, native or both.
	AnnotationInject = "flowauth.io/inject"
	// AnnotationStatus is written by flowauth for people to read; nothing depends on it.
	AnnotationStatus = "flowauth.io/status"
	// SecretOverridePrefix + NAME names the Kubernetes Secret to use for NAME.
	SecretOverridePrefix = "secret.flowauth.io/"

	// LabelFlowRunIDPrefect1 is set on flow-run pods by Prefect 1 Kubernetes agents.
	LabelFlowRunIDPrefect1 = "prefect.io/flow_run_id"
	// LabelFlowRunIDPrefect2 is set on flow-run pods by Prefect 2/3 Kubernetes workers.
	LabelFlowRunIDPrefect2 = "prefect.io/flow-run-id"
)

// Layers chooses what is injected (DESIGN.md §3).
type Layers string

const (
	LayersPrefect Layers = "prefect"
	LayersNative  Layers = "native"
	LayersBoth    Layers = "both"
)

func (l Layers) prefect() bool { return l == LayersPrefect || l == LayersBoth }
func (l Layers) native() bool  { return l == LayersNative || l == LayersBoth }

// Reason classifies a finding, for metrics and Events. Messages carry the detail.
type Reason string

const (
	ReasonInvalidSecretName      Reason = "InvalidSecretName"
	ReasonUnknownSecretName      Reason = "UnknownSecretName"
	ReasonInvalidNamespaceSecret Reason = "InvalidNamespaceDefault"
	ReasonEmptyDeclaration       Reason = "EmptyDeclaration"
	ReasonInvalidSecretOverride  Reason = "InvalidSecretOverride"
	ReasonUndeclaredOverride     Reason = "UndeclaredOverride"
	ReasonInvalidContainerName   Reason = "InvalidContainerName"
	ReasonContainerNotFound      Reason = "ContainerNotFound"
	ReasonNoTargetContainer      Reason = "NoTargetContainer"
	ReasonInvalidInjectMode      Reason = "InvalidInjectMode"
	ReasonUserEnvKept            Reason = "UserEnvKept"
	ReasonDeclaredEnvConflict    Reason = "DeclaredEnvConflict"
	ReasonUserMountKept          Reason = "UserMountKept"
	ReasonVolumeConflict         Reason = "VolumeConflict"
	ReasonTooManyNames           Reason = "TooManyNames"
	ReasonSecretNotFound         Reason = "SecretNotFound"
	ReasonSecretKeyMissing       Reason = "SecretKeyMissing"
)

// MaxDeclaredNames bounds one declaration: no flow run needs more, and it bounds the work a
// hostile annotation can cause.
const MaxDeclaredNames = 64
