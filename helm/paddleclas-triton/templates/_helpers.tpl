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
Path or URL tritonserver reads. Mounted sources sit under /models; with trtPlans the server reads
the writable copy the init containers prepared under /repository.
*/}}
{{- define "paddleclas-triton.repositoryLocation" -}}
{{- $variant := include "paddleclas-triton.variant" . }}
{{- $repo := .Values.modelRepository }}
{{- if .Values.trtPlans.enabled }}
{{- "/repository/models" }}
{{- else if eq $repo.source "image" }}
{{- printf "%s/%s" (trimSuffix "/" $repo.image.path) $variant }}
{{- else if eq $repo.source "objectStorage" }}
{{- printf "%s/%s" (trimSuffix "/" $repo.objectStorage.url) $variant }}
{{- else }}
{{- printf "/models/%s" $variant }}
{{- end }}
{{- end }}

{{/* Directory the TensorRT staging container copies from (mounted sources or the image). */}}
{{- define "paddleclas-triton.stagingSource" -}}
{{- $variant := include "paddleclas-triton.variant" . }}
{{- if eq .Values.modelRepository.source "image" }}
{{- printf "%s/%s" (trimSuffix "/" .Values.modelRepository.image.path) $variant }}
{{- else }}
{{- printf "/models/%s" $variant }}
{{- end }}
{{- end }}

{{/* Shared library preloaded into tritonserver for server.malloc (paths inside the 24.10 image). */}}
{{- define "paddleclas-triton.mallocLibrary" -}}
{{- if eq .Values.server.malloc "tcmalloc" }}
{{- "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4" }}
{{- else if eq .Values.server.malloc "jemalloc" }}
{{- "/usr/lib/x86_64-linux-gnu/libjemalloc.so" }}
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
{{- end }}

{{/* HTTP, gRPC (declared h2c so Gateway and mesh proxies speak HTTP/2 to it) and metrics ports. */}}
{{- define "paddleclas-triton.servicePorts" -}}
- name: http
  port: 8000
  targetPort: http
  protocol: TCP
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
