package mutate

// Annotation and label keys of DESIGN.md §2, in one place.
const (
	// AnnotationSecrets declares the default secret names a run needs (pod), or the namespace's
	// defaults (Namespace).
	AnnotationSecrets = "flowauth.io/secrets"
	// AnnotationContainers restricts injection to the named containers (init containers only
	// when named).
	AnnotationContainers = "flowauth.io/containers"
	// AnnotationSkipContainers names containers that never get credentials; it wins over
	// AnnotationContainers.
	AnnotationSkipContainers = "flowauth.io/skip-containers"
	// AnnotationInject chooses the layers: prefect, native or both; "false" opts the pod out.
	AnnotationInject = "flowauth.io/inject"
	// AnnotationStatus is written by flowauth for people to read; nothing depends on it.
	AnnotationStatus = "flowauth.io/status"
	// AnnotationOriginalContainers is written by flowauth on its first pass: the pod's regular
	// containers then. A container added later (by another webhook, before flowauth is invoked
	// again) is not one of them, and gets nothing unless AnnotationContainers names it.
	AnnotationOriginalContainers = "flowauth.io/original-containers"
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

// Values of AnnotationInject besides the layers.
const (
	// InjectFalse opts the pod out: it is left as it came, namespace defaults included.
	InjectFalse = "false"
	// InjectTrue is LayersBoth.
	InjectTrue = "true"
)

// StatusOptedOut is the status of a pod opted out with flowauth.io/inject: "false".
const StatusOptedOut = "opted-out=" + AnnotationInject + "=" + InjectFalse

// DefaultSkipContainers are the containers the webhook never injects unless a pod names them in
// flowauth.io/containers: the proxies and init containers of the common service meshes, and the
// agents other injectors add. A flow run's cloud keys have no business there.
var DefaultSkipContainers = []string{
	"istio-proxy", "istio-init", "istio-validation",
	"linkerd-proxy", "linkerd-init", "linkerd-network-validator",
	"consul-dataplane", "consul-connect-inject-init", "envoy-sidecar",
	"kuma-sidecar", "kuma-init",
	"vault-agent", "vault-agent-init", "jaeger-agent",
}

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
	ReasonContainersContradict   Reason = "ContainersContradict"
	ReasonAllContainersSkipped   Reason = "AllContainersSkipped"
	ReasonIdentityOverlap        Reason = "IdentityOverlap"
	ReasonOtherContainersLeftOut Reason = "OtherContainersLeftOut"
	ReasonTooManyContainers      Reason = "TooManyContainers"
	ReasonTooManyItems           Reason = "TooManyItems"
	ReasonInjectionTooLarge      Reason = "InjectionTooLarge"
	ReasonEnvFromNotChecked      Reason = "EnvFromNotChecked"
	ReasonNotAllowed             Reason = "NotAllowed"
	ReasonAllowListRequired      Reason = "AllowListRequired"
	ReasonInvalidAllowList       Reason = "InvalidAllowList"
	ReasonNamespaceNotWatched    Reason = "NamespaceNotWatched"
	ReasonRestrictedSecretType   Reason = "RestrictedSecretType"
)

// Reasons are every Reason above: flowauth's metrics start each at 0, so that a rate or an
// increase over them sees a replica's first findings too (a series that appears with its
// first count already in it adds nothing to an increase). TestReasonsListsEveryReason keeps
// the list whole.
var Reasons = []Reason{
	ReasonInvalidSecretName,
	ReasonUnknownSecretName,
	ReasonInvalidNamespaceSecret,
	ReasonEmptyDeclaration,
	ReasonInvalidSecretOverride,
	ReasonUndeclaredOverride,
	ReasonInvalidContainerName,
	ReasonContainerNotFound,
	ReasonNoTargetContainer,
	ReasonInvalidInjectMode,
	ReasonUserEnvKept,
	ReasonDeclaredEnvConflict,
	ReasonUserMountKept,
	ReasonVolumeConflict,
	ReasonTooManyNames,
	ReasonSecretNotFound,
	ReasonSecretKeyMissing,
	ReasonContainersContradict,
	ReasonAllContainersSkipped,
	ReasonIdentityOverlap,
	ReasonOtherContainersLeftOut,
	ReasonTooManyContainers,
	ReasonTooManyItems,
	ReasonInjectionTooLarge,
	ReasonEnvFromNotChecked,
	ReasonNotAllowed,
	ReasonAllowListRequired,
	ReasonInvalidAllowList,
	ReasonNamespaceNotWatched,
	ReasonRestrictedSecretType,
}

// Bounds on what one flow-run pod can make flowauth do (DESIGN.md §3: every input a tenant
// controls is bounded). None is near what a flow run needs; each keeps the work, the patch and
// the messages of one admission small whatever the pod says.
const (
	// maxListItems bounds every list an annotation holds.
	maxListItems = 64
	// MaxDeclaredNames bounds one declaration (the pod's, or the namespace's defaults).
	MaxDeclaredNames = maxListItems
	// MaxListedContainers bounds flowauth.io/containers and flowauth.io/skip-containers.
	MaxListedContainers = maxListItems
	// MaxContainers bounds a flow-run pod's containers, init containers included: flowauth
	// records them in flowauth.io/original-containers (a list like the others) and reports them,
	// and a flow run has a handful.
	MaxContainers = maxListItems
	// MaxEnv, MaxEnvFrom and MaxVolumeMounts bound each container's lists, and MaxVolumes the
	// pod's: flowauth compares what it adds with each item, and a flow run has tens of them.
	MaxEnv          = 1024
	MaxEnvFrom      = 256
	MaxVolumeMounts = 256
	MaxVolumes      = 256
	// MaxEnvFromSources bounds the distinct envFrom sources whose key names are looked up for
	// one pod (with key lookup): each is a read, and each may hold many keys.
	MaxEnvFromSources = 32
	// MaxPatchBytes bounds the JSON Patch one pod gets: the admission answer (base64 of it and
	// the warnings) then stays well under 64 KiB.
	MaxPatchBytes = 40 << 10
	// maxListedInMessage is how many names a message or the status lists before "and N more".
	maxListedInMessage = 10
)

// FlowContainerName is the container Prefect 2/3 Kubernetes workers run the flow in (their base
// job template names it so, and the worker requires it): by default, it gets the credentials.
const FlowContainerName = "prefect-job"
