{{/*
The chart name, or nameOverride.
*/}}
{{- define "flexrl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every resource: RELEASE-flexrl (RELEASE alone when it already contains the chart name), or
fullnameOverride. Truncated to leave room for the longest suffix ("-inference").
*/}}
{{- define "flexrl.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "flexrl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "flexrl.labels" -}}
helm.sh/chart: {{ include "flexrl.chart" . }}
{{ include "flexrl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flexrl
{{- end }}

{{/*
Labels that select the release's pods (a component label narrows them to one part).
*/}}
{{- define "flexrl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flexrl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Does the release run services (inference or MLflow)? A release without them is a job-only satellite (what
`flexrl submit` renders): its ConfigMap and Job alone, run as serviceAccount.name (default "default", no token
mounted) and covered by the NetworkPolicy of the namespace's service release.
*/}}
{{- define "flexrl.hasServices" -}}
{{- if or .Values.inference.enabled .Values.mlflow.enabled }}true{{ end }}
{{- end }}

{{/*
Does the release create its ServiceAccount? When serviceAccount.create, except in a job-only satellite (a Job or
a sweep and no services, what `flexrl submit` renders: many of them share the namespace's account). A release with no
Job and no services is then the ServiceAccount alone, as Terraform installs it for Jobs next to an external MLflow.
*/}}
{{- define "flexrl.createsServiceAccount" -}}
{{- if and .Values.serviceAccount.create (or (include "flexrl.hasServices" .) (not (or .Values.job.enabled .Values.sweep.enabled))) }}true{{ end }}
{{- end }}

{{/*
The ServiceAccount the pods run as: the release's own when it creates one, else serviceAccount.name or "default".
*/}}
{{- define "flexrl.serviceAccountName" -}}
{{- if include "flexrl.createsServiceAccount" . }}
{{- default (include "flexrl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The flex-rl image: repository@digest when a digest is set, else repository:tag (tag defaults to the appVersion).
*/}}
{{- define "flexrl.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The MLflow image: mlflow.image when its repository is set, else the flex-rl image.
*/}}
{{- define "flexrl.mlflowImage" -}}
{{- if .Values.mlflow.image.repository }}
{{- printf "%s:%s" .Values.mlflow.image.repository (required "mlflow.image.tag is required with mlflow.image.repository" .Values.mlflow.image.tag) }}
{{- else }}
{{- include "flexrl.image" . }}
{{- end }}
{{- end }}

{{/*
The in-chart MLflow Service's name and in-cluster URL.
*/}}
{{- define "flexrl.mlflowService" -}}
{{- printf "%s-mlflow" (include "flexrl.fullname" .) }}
{{- end }}

{{- define "flexrl.mlflowServiceUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "flexrl.mlflowService" .) .Release.Namespace (int .Values.mlflow.service.port) }}
{{- end }}

{{/*
The tracking URI jobs log to: mlflow.trackingUri, else the in-chart MLflow Service when enabled, else empty (the
pod's embedded store).
*/}}
{{- define "flexrl.trackingUri" -}}
{{- if .Values.mlflow.trackingUri }}
{{- .Values.mlflow.trackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- include "flexrl.mlflowServiceUrl" . }}
{{- end }}
{{- end }}

{{/*
The tracking URI of a notebook Job or sweep, which must not lose its runs: flexrl.trackingUri, else the pod's
embedded store only when it lives on a claim (data.existingClaim, `flexrl submit --local-store`); else fail.
*/}}
{{- define "flexrl.jobTrackingUri" -}}
{{- $uri := include "flexrl.trackingUri" . }}
{{- if and (not $uri) (not .Values.data.existingClaim) }}
{{- fail "no tracking server: the runs would be lost with the pod (an emptyDir). Set mlflow.trackingUri (flexrl submit/sweep --tracking-uri), enable mlflow in this release, or keep the pod's store on a claim (data.existingClaim, --local-store)" }}
{{- end }}
{{- $uri }}
{{- end }}

{{/*
The Secret holding the inference server's token.
*/}}
{{- define "flexrl.apiTokenSecret" -}}
{{- default (printf "%s-api-token" (include "flexrl.fullname" .)) .Values.inference.apiToken.existingSecret }}
{{- end }}

{{/*
Checkov skip annotations, from a list of "CHECK_ID=reason" strings (checkov reads checkov.io/skipN annotations).
*/}}
{{- define "flexrl.checkovSkips" -}}
{{- range $i, $skip := . }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end }}

{{/*
Checkov skips that follow from the values, for a resource running IMAGE. Call with (list $ IMAGE).
- a pull policy other than Always is a deliberate choice for images loaded into the nodes (Minikube);
- an image pinned by tag rather than digest: the digest exists only once CI has pushed the image (image.digest).
*/}}
{{- define "flexrl.valueSkips" -}}
{{- $ := index . 0 }}
{{- $image := index . 1 }}
{{- $skips := list }}
{{- if ne $.Values.image.pullPolicy "Always" }}
{{- $skips = append $skips (printf "CKV_K8S_15=image.pullPolicy is %s on purpose: images loaded into the node (minikube image build)" $.Values.image.pullPolicy) }}
{{- end }}
{{- if not (contains "@" $image) }}
{{- $skips = append $skips (printf "CKV_K8S_43=%s is pinned by tag; set image.digest once CI has pushed it to pin by digest" $image) }}
{{- end }}
{{- toJson $skips }}
{{- end }}

{{/*
Pod-level fields shared by every pod: ServiceAccount, no API token, security context, pull secrets.
*/}}
{{- define "flexrl.podCommon" -}}
serviceAccountName: {{ include "flexrl.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Scheduling of a pod: nodeSelector, tolerations and affinity, plus the GPU ones when (index . 1) is true.
Call with (list $ GPU?).
*/}}
{{- define "flexrl.scheduling" -}}
{{- $ := index . 0 }}
{{- $gpu := index . 1 }}
{{- $nodeSelector := deepCopy $.Values.nodeSelector }}
{{- $tolerations := $.Values.tolerations }}
{{- if $gpu }}
{{- $nodeSelector = merge $nodeSelector $.Values.gpu.nodeSelector }}
{{- $tolerations = concat $tolerations $.Values.gpu.tolerations }}
{{- end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A container's resources with N GPUs added to its limits. Call with (list $ RESOURCES N).
*/}}
{{- define "flexrl.resources" -}}
{{- $ := index . 0 }}
{{- $res := deepCopy (index . 1) }}
{{- $gpus := int (index . 2) }}
{{- if gt $gpus 0 }}
{{- $limits := merge (dict $.Values.gpu.resourceName $gpus) (default dict (get $res "limits")) }}
{{- $_ := set $res "limits" $limits }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/*
Environment of every flex-rl container: HOME and FLEXRL_HOME on the writable volumes, then extraEnv.
*/}}
{{- define "flexrl.env" -}}
- name: HOME
  value: /tmp
- name: FLEXRL_HOME
  value: /data
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Mounts and volumes of the writable scratch space (/tmp, /dev/shm) and FLEXRL_HOME (/data).
*/}}
{{- define "flexrl.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: shm
  mountPath: /dev/shm
- name: data
  mountPath: /data
{{- end }}

{{- define "flexrl.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.tmpSizeLimit }}
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.scratch.shmSizeLimit }}
- name: data
  {{- if .Values.data.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.data.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.data.sizeLimit }}
  {{- end }}
{{- end }}
