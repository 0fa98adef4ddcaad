{{/*
Names and labels shared by every template. Resource names are cut to 63 characters, the DNS label
limit Kubernetes applies to most names.
*/}}

{{- define "paddleclas-triton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "paddleclas-triton.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "paddleclas-triton.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels never change after install: Deployment selectors are immutable. */}}
{{- define "paddleclas-triton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paddleclas-triton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "paddleclas-triton.labels" -}}
helm.sh/chart: {{ include "paddleclas-triton.chart" . }}
{{ include "paddleclas-triton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The helm test pod's own name and instance labels: no selector of the chart matches them. The pod has
no controller, and a PodDisruptionBudget that selected it would allow no disruption while it exists
(Kubernetes' disruption controller, KEP-85), blocking every drain of its node; a Service selecting it
would route clients to it. The NetworkPolicy admits it by these labels.
*/}}
{{- define "paddleclas-triton.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "paddleclas-triton.name" . | trunc 58 | trimSuffix "-" }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "paddleclas-triton.testLabels" -}}
helm.sh/chart: {{ include "paddleclas-triton.chart" . }}
{{ include "paddleclas-triton.testSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: test
{{- end }}

{{- define "paddleclas-triton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "paddleclas-triton.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The server image: a digest pins it, else the tag, else the chart's appVersion. */}}
{{- define "paddleclas-triton.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* production in gpu mode, portable in cpu mode, unless modelRepository.variant says otherwise. */}}
{{- define "paddleclas-triton.variant" -}}
{{- if .Values.modelRepository.variant }}
{{- .Values.modelRepository.variant }}
{{- else if eq .Values.mode "gpu" }}
{{- "production" }}
{{- else }}
{{- "portable" }}
{{- end }}
{{- end }}

{{/*
Mounted sources (image, pvc, nfs) are rendered: the render-repository init container writes the
serving copy to /repository/models and the server reads that. Object storage is read by
tritonserver itself, as installed: no render, so no model selection and the installed capacity.
*/}}
{{- define "paddleclas-triton.rendered" -}}
{{- if ne .Values.modelRepository.source "objectStorage" }}true{{ end }}
{{- end }}

{{/* Path or URL tritonserver reads. */}}
{{- define "paddleclas-triton.repositoryLocation" -}}
{{- $repo := .Values.modelRepository }}
{{- if include "paddleclas-triton.rendered" . }}
{{- "/repository/models" }}
{{- else }}
{{- printf "%s/%s" (trimSuffix "/" $repo.objectStorage.url) (include "paddleclas-triton.variant" .) }}
{{- end }}
{{- end }}

{{/*
The installed repository the render step reads: inside the image, or the mounted volume. The
serving copy links to it by absolute path, so every container that reads the copy mounts the
volume at this same place.
*/}}
{{- define "paddleclas-triton.installedRepository" -}}
{{- $variant := include "paddleclas-triton.variant" . }}
{{- if eq .Values.modelRepository.source "image" }}
{{- printf "%s/%s" (trimSuffix "/" .Values.modelRepository.image.path) $variant }}
{{- else }}
{{- printf "/models/%s" $variant }}
{{- end }}
{{- end }}

{{/* The read-only mount of a pvc or nfs repository (nothing for image and objectStorage). */}}
{{- define "paddleclas-triton.modelsMount" -}}
{{- if has .Values.modelRepository.source (list "pvc" "nfs") }}
- name: models
  mountPath: /models
  readOnly: true
  {{- if and (eq .Values.modelRepository.source "pvc") .Values.modelRepository.pvc.subPath }}
  subPath: {{ .Values.modelRepository.pvc.subPath }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
Cores the steps are sized for: capacity.cores, or the server container's CPU limit in this mode,
rounded up ("4" and "4000m" are 4, "1.5" and "1500m" are 2): the cores its cgroup quota lets it use.
*/}}
{{- define "paddleclas-triton.cores" -}}
{{- if .Values.capacity.cores }}
{{- .Values.capacity.cores | int }}
{{- else }}
{{- $resources := get .Values.resources .Values.mode | default dict }}
{{- $limits := $resources.limits | default dict }}
{{- $cpu := get $limits "cpu" | default "" | toString }}
{{- if not $cpu }}
{{- fail (printf "capacity.cores is 0, so the cores come from resources.%s.limits.cpu, which is not set: set one of them" .Values.mode) }}
{{- end }}
{{- if hasSuffix "m" $cpu }}
{{- divf (trimSuffix "m" $cpu | float64) 1000 | ceil | int }}
{{- else }}
{{- $cpu | float64 | ceil | int }}
{{- end }}
{{- end }}
{{- end }}

{{/* Shared library preloaded into tritonserver for server.malloc (paths inside the NVIDIA image, 24.10 and 26.09 alike: Ubuntu x86-64 multiarch). */}}
{{- define "paddleclas-triton.mallocLibrary" -}}
{{- if eq .Values.server.malloc "tcmalloc" }}
{{- "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4" }}
{{- else if eq .Values.server.malloc "jemalloc" }}
{{- "/usr/lib/x86_64-linux-gnu/libjemalloc.so" }}
{{- end }}
{{- end }}

{{/* The allocator's settings beside LD_PRELOAD (model_repository/memory.py, MALLOC_ENV): tcmalloc returns freed spans at once in tritonserver, whose decoding steps turn that off for themselves and release when idle; jemalloc purges within a second. */}}
{{- define "paddleclas-triton.mallocEnv" -}}
{{- if eq .Values.server.malloc "tcmalloc" }}
- name: TCMALLOC_AGGRESSIVE_DECOMMIT
  value: "true"
{{- else if eq .Values.server.malloc "jemalloc" }}
- name: MALLOC_CONF
  value: background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0
{{- end }}
{{- end }}

{{/*
Value combinations the schema cannot express with a readable message stop the render here, each
with a sentence saying what to change.
*/}}
{{- define "paddleclas-triton.validate" -}}
{{- $repo := .Values.modelRepository }}
{{- if and (eq $repo.source "pvc") (not $repo.pvc.claimName) }}
{{- fail "modelRepository.source is pvc: set modelRepository.pvc.claimName to the claim holding production/ and portable/" }}
{{- end }}
{{- if and (eq $repo.source "nfs") (not (and $repo.nfs.server $repo.nfs.path)) }}
{{- fail "modelRepository.source is nfs: set modelRepository.nfs.server and modelRepository.nfs.path" }}
{{- end }}
{{- if eq $repo.source "objectStorage" }}
{{- if not (regexMatch "^(s3|gs|as)://" $repo.objectStorage.url) }}
{{- fail "modelRepository.source is objectStorage: modelRepository.objectStorage.url must start with s3://, gs:// or as://" }}
{{- end }}
{{- if .Values.models }}
{{- fail "models needs a mounted repository (modelRepository.source image, pvc or nfs), where the render-repository init container selects them; with objectStorage tritonserver serves every model in the bucket as installed: upload only the models this release serves (that fit the GPU: helm/README.md, GPU memory), and set models to [] (its default names the models that fit a 24 GiB GPU)" }}
{{- end }}
{{- $capacity := .Values.capacity }}
{{- if or $capacity.cores $capacity.preprocessInstances $capacity.pixelsPreprocessInstances $capacity.postprocessInstances $capacity.networkCpuInstances $capacity.networkCpuThreads $capacity.preprocessQueue (ne (int $capacity.networkGpuInstances) 1) }}
{{- fail "capacity is applied by the render-repository init container, which needs a mounted repository (modelRepository.source image, pvc or nfs); with objectStorage the installed configs serve as they are: render a sized copy before uploading (helm/README.md, Models and capacity), and leave capacity at its defaults" }}
{{- end }}
{{- if .Values.preprocessing.fastDecode }}
{{- fail "preprocessing.fastDecode is applied by the render-repository init container, which needs a mounted repository (modelRepository.source image, pvc or nfs); with objectStorage render a copy with python -m model_repository render --fast-decode before uploading" }}
{{- end }}
{{- if ne .Values.preprocessing.resizeTier "exact" }}
{{- fail "preprocessing.resizeTier is applied by the render-repository init container, which needs a mounted repository (modelRepository.source image, pvc or nfs); with objectStorage the installed configs serve as they are (exact)" }}
{{- end }}
{{- end }}
{{- if and (not .Values.preprocessing.fastDecode) (not (kindIs "invalid" .Values.preprocessing.fastDecodeMargin)) }}
{{- fail "preprocessing.fastDecodeMargin sets fast decode's margin and needs preprocessing.fastDecode: true (the default decode is exact)" }}
{{- end }}
{{- if and .Values.models .Values.tests.models }}
{{- $served := list }}
{{- range .Values.models }}
{{- $served = append $served (lower .) }}
{{- end }}
{{- range .Values.tests.models }}
{{- if not (has (lower .) $served) }}
{{- fail (printf "tests.models names %s, which this release does not serve: models lists %s" . (join ", " $.Values.models)) }}
{{- end }}
{{- end }}
{{- end }}
{{- include "paddleclas-triton.validateGpuMemory" . }}
{{- if include "paddleclas-triton.rendered" . }}
{{- /* Fails with its own message when neither capacity.cores nor a CPU limit says the cores. */}}
{{- $_ := include "paddleclas-triton.cores" . }}
{{- end }}
{{- if .Values.trtPlans.enabled }}
{{- if ne .Values.mode "gpu" }}
{{- fail "trtPlans.enabled needs mode gpu: TensorRT plans are built on and for a GPU" }}
{{- end }}
{{- if eq $repo.source "objectStorage" }}
{{- fail "trtPlans.enabled works with modelRepository.source image, pvc or nfs; for object storage build the plans before uploading" }}
{{- end }}
{{- if eq (include "paddleclas-triton.variant" .) "portable" }}
{{- fail "trtPlans.enabled builds plans for the production repository; unset modelRepository.variant or set it to production" }}
{{- end }}
{{- $cache := .Values.trtPlans.cacheVolume }}
{{- if and (include "paddleclas-triton.trtCacheClaim" .) (not .Values.trtPlans.cacheClaimName) (ne $cache.accessMode "ReadWriteMany") (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "trtPlans.cacheVolume.accessMode ReadWriteOnce mounts the plan cache on one node, but this release runs several pods (replicaCount, autoscaling): set it to ReadWriteMany with a storage class that offers it (trtPlans.cacheVolume.storageClassName), or name an existing ReadWriteMany claim in trtPlans.cacheClaimName" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.mode "cpu") (eq (include "paddleclas-triton.variant" .) "production") }}
{{- fail "mode cpu cannot serve the production repository (its network runs on the GPU); use variant portable or leave it empty" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "enable either metrics.serviceMonitor or metrics.podMonitor, not both: Prometheus would scrape every pod twice" }}
{{- end }}
{{- if and .Values.gpu.products .Values.affinity.nodeAffinity (eq .Values.mode "gpu") }}
{{- fail "gpu.products writes the pods' nodeAffinity; move your affinity.nodeAffinity terms there or drop gpu.products" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is larger than autoscaling.maxReplicas" }}
{{- end }}
{{- /* The NetworkPolicy (on by default) must name the peers that a routed or scraped release needs. */}}
{{- if .Values.networkPolicy.enabled }}
{{- if and (or .Values.ingress.enabled .Values.grpcRoute.enabled) (not .Values.networkPolicy.clients) }}
{{- fail "networkPolicy is on and ingress or grpcRoute is on: list the ingress controller's or gateway's pods in networkPolicy.clients (e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]), or they would be refused; networkPolicy.enabled=false turns the policy off" }}
{{- end }}
{{- if and (or .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled .Values.autoscaling.enabled) (not .Values.networkPolicy.scrapers) }}
{{- fail "networkPolicy is on and Prometheus scrapes the pods (metrics.serviceMonitor, metrics.podMonitor or autoscaling): list Prometheus's pods in networkPolicy.scrapers (e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]), or the metrics port would refuse them" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding the admin key of the restricted APIs: the existing one, or the one the chart creates. */}}
{{- define "paddleclas-triton.adminKeySecret" -}}
{{- .Values.security.adminKey.existingSecret | default (printf "%s-admin-key" (include "paddleclas-triton.fullname" .)) }}
{{- end }}

{{/*
The environment variable carrying the admin key, from the Secret. Containers that use it name only
$(TRITON_ADMIN_KEY) in their arguments; the kubelet expands it, so the key is in no manifest.
*/}}
{{- define "paddleclas-triton.adminKeyEnv" -}}
- name: TRITON_ADMIN_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "paddleclas-triton.adminKeySecret" . }}
      key: {{ .Values.security.adminKey.secretKey }}
{{- end }}

{{/*
Restriction flags of both protocols: "<group>,<group>:admin-key=$(TRITON_ADMIN_KEY)", the colon form
tritonserver 2.51 accepts (its --help shows a comma before the key, which it refuses). Clients send
"admin-key: <key>" over HTTP and "triton-grpc-protocol-admin-key: <key>" over gRPC.
*/}}
{{- define "paddleclas-triton.restrictionArgs" -}}
{{- $spec := printf "%s:admin-key=$(TRITON_ADMIN_KEY)" (join "," .Values.security.restrictedApis) }}
- --grpc-restricted-protocol={{ $spec }}
{{- if .Values.server.httpEnabled }}
- --http-restricted-api={{ $spec }}
{{- end }}
{{- end }}

{{/* HTTP (unless server.httpEnabled is false), gRPC (declared h2c so Gateway and mesh proxies speak HTTP/2 to it) and metrics ports. */}}
{{- define "paddleclas-triton.servicePorts" -}}
{{- if .Values.server.httpEnabled }}
- name: http
  port: 8000
  targetPort: http
  protocol: TCP
{{- end }}
- name: grpc
  port: 8001
  targetPort: grpc
  protocol: TCP
  appProtocol: kubernetes.io/h2c
- name: metrics
  port: 8002
  targetPort: metrics
  protocol: TCP
{{- end }}

{{/*
The plan cache's claim: trtPlans.cacheClaimName, else the one the chart creates (pvc-trt-plans.yaml)
when trtPlans.cacheVolume.persistent; empty for an emptyDir cache (plans rebuilt at every pod start).
*/}}
{{- define "paddleclas-triton.trtCacheClaim" -}}
{{- if .Values.trtPlans.enabled }}
{{- if .Values.trtPlans.cacheClaimName }}
{{- .Values.trtPlans.cacheClaimName }}
{{- else if .Values.trtPlans.cacheVolume.persistent }}
{{- printf "%s-trt-plans" (include "paddleclas-triton.fullname" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Estimated seconds build-trt-plans spends on the served models' plans (an estimate, unverified on a
GPU): files/trt-build-seconds.json, generated from model_repository/configs.py (trt_build_seconds) by
helm/gen_trt_build_seconds.py, summed over `models` (every catalog network when empty); a name the
file lacks counts as its largest estimate. 0 without trtPlans. With a filled cache the build is a copy,
but the first start on a GPU type, which the deadline must allow for, builds them all.
*/}}
{{- define "paddleclas-triton.trtBuildSeconds" -}}
{{- $total := 0 }}
{{- if .Values.trtPlans.enabled }}
{{- $estimates := .Files.Get "files/trt-build-seconds.json" | fromJson }}
{{- $largest := 0 }}
{{- range $estimates }}
{{- $largest = max $largest (int .) }}
{{- end }}
{{- range (.Values.models | default (keys $estimates)) }}
{{- $total = add $total (get $estimates (lower .) | default $largest | int) }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
The Deployment's progressDeadlineSeconds (Kubernetes' default of 600 s is shorter than the startup
probe's own budget): image pulls and the render step (rollingUpdate.pullAndInitSeconds), the plan
builds (trtBuildSeconds) and the startup probe's budget, one after the other.
*/}}
{{- define "paddleclas-triton.progressDeadlineSeconds" -}}
{{- $startup := mul .Values.probes.startup.periodSeconds .Values.probes.startup.failureThreshold }}
{{- add .Values.rollingUpdate.pullAndInitSeconds (include "paddleclas-triton.trtBuildSeconds" . | int) $startup }}
{{- end }}

{{/*
GPU memory: every served production network runs capacity.networkGpuInstances ONNX Runtime sessions
on each GPU, each session's CUDA arena capped by its config's gpu_mem_limit. Those caps come from the
export's graph estimates (export/memory.py), copied per model into files/network-memory.json by
`python -m export memory --chart`. Their sum plus gpu.reservedMiB must fit in gpu.memoryGiB, or the
render stops naming the total and the largest models. gpu mode with the production variant only.
With objectStorage the chart cannot see which models the bucket holds (models must be empty there):
no check. Estimates, unverified on a GPU; with trtPlans the ONNX Runtime figures stand in for the
plans' memory, which is not estimated.
*/}}
{{- define "paddleclas-triton.validateGpuMemory" -}}
{{- if and (eq .Values.mode "gpu") (eq (include "paddleclas-triton.variant" .) "production") (include "paddleclas-triton.rendered" .) }}
{{- $figures := (.Files.Get "files/network-memory.json" | fromJson).models }}
{{- $served := list }}
{{- range (.Values.models | default (keys $figures | sortAlpha)) }}
{{- $name := lower . }}
{{- if not (hasKey $figures $name) }}
{{- fail (printf "files/network-memory.json has no figure for %s: regenerate it (python -m export memory --chart)" .) }}
{{- end }}
{{- $served = append $served $name }}
{{- end }}
{{- $instances := int .Values.capacity.networkGpuInstances }}
{{- $networks := 0 }}
{{- $ranked := list }}
{{- range ($served | uniq) }}
{{- $need := mul (int (get $figures .).gpuMemLimitMiB) $instances }}
{{- $networks = add $networks $need }}
{{- $ranked = append $ranked (printf "%09d %s" $need .) }}
{{- end }}
{{- $available := mul (int .Values.gpu.memoryGiB) 1024 }}
{{- $total := add $networks (int .Values.gpu.reservedMiB) }}
{{- if gt $total $available }}
{{- $largest := list }}
{{- range (slice (reverse (sortAlpha $ranked)) 0 (min 3 (len $ranked))) }}
{{- $name := index (splitList " " .) 1 }}
{{- $largest = append $largest (printf "%s %d MiB" $name (mul (int (get $figures $name).gpuMemLimitMiB) $instances)) }}
{{- end }}
{{- fail (printf "the served networks need %d MiB of GPU memory (%d models x %d instances, ONNX Runtime's gpu_mem_limit of each from files/network-memory.json: graph estimates, unverified on a GPU) plus gpu.reservedMiB %d = %d MiB, more than gpu.memoryGiB %d (%d MiB); largest: %s. Serve fewer models (models), fewer capacity.networkGpuInstances, or set gpu.memoryGiB to your GPU's memory (helm/README.md, Models and capacity)" $networks (len ($served | uniq)) $instances (int .Values.gpu.reservedMiB) $total (int .Values.gpu.memoryGiB) $available (join ", " $largest)) }}
{{- end }}
{{- end }}
{{- end }}
