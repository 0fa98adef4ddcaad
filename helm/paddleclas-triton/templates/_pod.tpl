{{/*
Pieces of the server pod, kept apart from deployment.yaml so each reads on its own.
*/}}

{{/* Node placement: GPU product affinity, GPU taint toleration, spread over nodes and zones. */}}
{{- define "paddleclas-triton.placement" -}}
{{- $gpu := eq .Values.mode "gpu" }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := deepCopy .Values.affinity }}
{{- if and $gpu .Values.gpu.products }}
{{- $term := dict "matchExpressions" (list (dict "key" "nvidia.com/gpu.product" "operator" "In" "values" .Values.gpu.products)) }}
{{- $_ := set $affinity "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" (list $term))) }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tolerations := list }}
{{- if and $gpu .Values.gpu.tolerateTaint }}
{{- $tolerations = append $tolerations (dict "key" .Values.gpu.resourceName "operator" "Exists" "effect" "NoSchedule") }}
{{- end }}
{{- $tolerations = concat $tolerations .Values.tolerations }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range .Values.topologySpread.topologyKeys }}
  - topologyKey: {{ . }}
    maxSkew: {{ $.Values.topologySpread.maxSkew }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "paddleclas-triton.selectorLabels" $ | nindent 8 }}
    # Count only pods of the same rollout, so old pods on their way out do not skew new ones.
    matchLabelKeys:
      - pod-template-hash
  {{- end }}
{{- end }}
{{- end }}

{{/* The mode's requests and limits, plus the GPU limit in gpu mode. */}}
{{- define "paddleclas-triton.resources" -}}
{{- $res := deepCopy (get .Values.resources .Values.mode) }}
{{- if eq .Values.mode "gpu" }}
{{- $limits := default dict $res.limits }}
{{- $_ := set $limits .Values.gpu.resourceName .Values.gpu.count }}
{{- $_ := set $res "limits" $limits }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{- define "paddleclas-triton.serverVolumeMounts" -}}
- name: shm
  mountPath: /dev/shm
- name: tmp
  mountPath: /tmp
{{- if include "paddleclas-triton.rendered" . }}
- name: repository
  mountPath: /repository
  readOnly: true
{{- end }}
{{- /* The serving copy links into the installed repository: mounted where the render step read it. */}}
{{- include "paddleclas-triton.modelsMount" . }}
{{- if and (eq .Values.modelRepository.source "objectStorage") (hasPrefix "gs://" .Values.modelRepository.objectStorage.url) }}
- name: gcs-credentials
  mountPath: /var/run/secrets/gcs
  readOnly: true
{{- end }}
{{- end }}

{{- define "paddleclas-triton.volumes" -}}
{{- $repo := .Values.modelRepository }}
# The Python backend passes tensors through /dev/shm; memory-backed, bounded.
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shm.sizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- if eq $repo.source "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ $repo.pvc.claimName }}
    readOnly: true
{{- else if eq $repo.source "nfs" }}
- name: models
  nfs:
    server: {{ $repo.nfs.server }}
    path: {{ $repo.nfs.path }}
    readOnly: true
{{- else if and (eq $repo.source "objectStorage") (hasPrefix "gs://" $repo.objectStorage.url) }}
- name: gcs-credentials
  secret:
    secretName: {{ required "modelRepository.objectStorage.existingSecret is needed for gs:// (the service-account JSON)" $repo.objectStorage.existingSecret }}
{{- end }}
{{- if include "paddleclas-triton.rendered" . }}
# The serving copy: configs and links only, plus TensorRT plans (and, from the image, the networks'
# ONNX files) when trtPlans builds them.
- name: repository
  emptyDir:
    sizeLimit: {{ .Values.trtPlans.enabled | ternary .Values.trtPlans.stagingSizeLimit "64Mi" }}
{{- end }}
{{- if .Values.trtPlans.enabled }}
# Built plans: on a claim by default, so a pod start after the first one on a GPU type copies them.
- name: trt-cache
  {{- with include "paddleclas-triton.trtCacheClaim" . }}
  persistentVolumeClaim:
    claimName: {{ . }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end }}

{{/*
"render-repository" (the server image, which carries the project's catalog/, model_repository/
and preprocess/ under /opt/paddleclas) writes the serving copy of the installed repository: the
models this release serves and the steps they call, each config rendered for the server container's
cores (model_repository/layout.py), every other file a link into the installed repository.
*/}}
{{- define "paddleclas-triton.renderInitContainer" -}}
{{- $capacity := .Values.capacity }}
{{- /* The TensorRT image cannot see the server image's files: links to them become copies there. */}}
{{- $copyNetworks := and .Values.trtPlans.enabled (eq .Values.modelRepository.source "image") }}
- name: render-repository
  image: {{ include "paddleclas-triton.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if $copyNetworks }}
  command:
    - /bin/sh
    - -ec
    - |
      python3 -m model_repository render "$@"
      # build-trt-plans runs in the TensorRT image, where this image's files do not exist: the
      # networks' file links become copies on the shared volume (ONNX, records). Directory links
      # (warmup data) and the other steps' links stay: only tritonserver, in this image, reads them.
      find /repository/models -path '*_network/*' -type l -xtype f | while read -r link; do
        cp --remove-destination "$(readlink -f "$link")" "$link"
      done
    - render-repository
  {{- else }}
  command: ["python3", "-m", "model_repository", "render"]
  {{- end }}
  args:
    - --repository={{ include "paddleclas-triton.installedRepository" . }}
    - --out=/repository/models
    - --cores={{ include "paddleclas-triton.cores" . }}
    {{- with .Values.models }}
    - --models
    {{- range . }}
    - {{ . | quote }}
    {{- end }}
    {{- end }}
    {{- range list (list "preprocessInstances" "--preprocess-instances") (list "pixelsPreprocessInstances" "--pixels-preprocess-instances") (list "postprocessInstances" "--postprocess-instances") (list "networkCpuInstances" "--network-cpu-instances") (list "networkCpuThreads" "--network-cpu-threads") (list "preprocessQueue" "--preprocess-queue") }}
    {{- $count := get $capacity (index . 0) | default 0 | int }}
    {{- if $count }}
    - {{ index . 1 }}={{ $count }}
    {{- end }}
    {{- end }}
    {{- if eq .Values.mode "gpu" }}
    - --network-gpu-instances={{ $capacity.networkGpuInstances | int }}
    {{- end }}
    {{- if .Values.responseCache.enabled }}
    - --response-cache
    {{- end }}
    {{- if .Values.trtPlans.enabled }}
    - --tensorrt-plans={{ .Values.trtPlans.precision }}
    {{- end }}
    {{- if .Values.preprocessing.fastDecode }}
    - --fast-decode
    {{- if not (kindIs "invalid" .Values.preprocessing.fastDecodeMargin) }}
    - --fast-decode-margin={{ .Values.preprocessing.fastDecodeMargin }}
    {{- end }}
    {{- end }}
    {{- if ne .Values.preprocessing.resizeTier "exact" }}
    - --resize-tier={{ .Values.preprocessing.resizeTier }}
    {{- end }}
  env:
    - name: PYTHONPATH
      value: /opt/paddleclas
    - name: PYTHONDONTWRITEBYTECODE
      value: "1"
    - name: HOME
      value: /tmp
  # Requests equal limits in every container, or the pod loses its Guaranteed QoS class. It reads
  # configs and writes links: seconds of one core, ~150 MB for Python with numpy, OpenCV, protobuf.
  resources:
    requests:
      cpu: "1"
      memory: 512Mi
    limits:
      cpu: "1"
      memory: 512Mi
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: repository
      mountPath: /repository
    - name: tmp
      mountPath: /tmp
    {{- with include "paddleclas-triton.modelsMount" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
TensorRT plans, built where they run, in the serving copy render-repository wrote, by the project's
one builder (export/trt_plans.py, which the server image carries under /opt/paddleclas).
"stage-repository" (the server image, which tells the server's TensorRT version) checks the plans
already there, records that version and puts the builder on the shared volume; "build-trt-plans"
(the TensorRT image of the same release, which has no project code) runs that file: trtexec, then
each network pointed at its plan.
*/}}
{{- define "paddleclas-triton.trtInitContainers" -}}
- name: stage-repository
  image: {{ include "paddleclas-triton.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["python3", "-m", "export.trt_plans", "stage"]
  args:
    - --target=/repository
    {{- with .Values.trtPlans.serverTensorrtVersion }}
    - --server-tensorrt-version={{ . }}
    {{- end }}
  env:
    - name: PYTHONPATH
      value: /opt/paddleclas
    - name: PYTHONDONTWRITEBYTECODE
      value: "1"
  # Requests equal limits in every container, or the pod loses its Guaranteed QoS class.
  resources:
    requests:
      cpu: 500m
      memory: 256Mi
    limits:
      cpu: 500m
      memory: 256Mi
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: repository
      mountPath: /repository
    {{- with include "paddleclas-triton.modelsMount" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
- name: build-trt-plans
  image: {{ printf "%s:%s" .Values.trtPlans.image.repository .Values.trtPlans.image.tag }}
  imagePullPolicy: IfNotPresent
  # The builder stage-repository left on the volume (standard library only: the image has no protobuf).
  command: ["python3", "/repository/trt_plans.py", "build"]
  args:
    - --repository=/repository
    - --cache=/trt-cache
    - --precision={{ .Values.trtPlans.precision }}
    - --workspace-mib={{ .Values.trtPlans.workspaceMiB }}
  env:
    - name: HOME
      value: /tmp
    - name: PYTHONDONTWRITEBYTECODE
      value: "1"
  resources:
    {{- $res := deepCopy .Values.trtPlans.resources }}
    {{- $limits := default dict $res.limits }}
    {{- $_ := set $limits .Values.gpu.resourceName .Values.gpu.count }}
    {{- $_ := set $res "limits" $limits }}
    {{- toYaml $res | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: repository
      mountPath: /repository
    - name: trt-cache
      mountPath: /trt-cache
    - name: tmp
      mountPath: /tmp
    {{- with include "paddleclas-triton.modelsMount" . | trim }}
    {{- . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
Tracing and response-cache flags of tritonserver (docs/operations.md), in the form the launcher's
model_repository/flags.py trace_flags and cache_flags write (a chart test compares them). Nothing
when both are off. The response cache needs the serving copy, where render-repository enables
response_cache on the ensembles.
*/}}
{{- define "paddleclas-triton.operationArgs" -}}
{{- $tracing := .Values.tracing }}
{{- if $tracing.mode }}
- --trace-config=mode={{ $tracing.mode }}
- --trace-config=level=TIMESTAMPS
- --trace-config=rate={{ $tracing.rate | int }}
- --trace-config=count={{ $tracing.count | int }}
{{- if eq $tracing.mode "triton" }}
- --trace-config=triton,file=/tmp/trace.json
- --trace-config=triton,log-frequency={{ $tracing.logFrequency | int }}
{{- else }}
{{- $models := list }}
{{- range .Values.models }}
{{- $models = append $models (lower .) }}
{{- end }}
{{- $models = $models | default (list "all") }}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- $defaults := dict "service.name" (include "paddleclas-triton.fullname" .) "service.namespace" .Release.Namespace "service.version" $tag "helm.release" .Release.Name "paddleclas.models" (join "," $models) }}
{{- $resource := merge (deepCopy ($tracing.resource | default dict)) $defaults }}
- --trace-config=opentelemetry,url={{ $tracing.otlpUrl }}
{{- range $key := keys $resource | sortAlpha }}
- {{ printf "--trace-config=opentelemetry,resource=%s=%s" $key (get $resource $key) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.responseCache.enabled }}
{{- if not (include "paddleclas-triton.rendered" .) }}
{{- fail "responseCache.enabled needs a mounted repository (modelRepository.source image, pvc or nfs): render-repository turns response_cache on in the ensembles' configs; with objectStorage set response_cache { enable: true } in the uploaded ensembles and pass --cache-config in server.extraArgs" }}
{{- end }}
- --cache-config=local,size={{ mul .Values.responseCache.sizeMiB 1048576 }}
{{- end }}
{{- end }}

{{/*
The gateway (gateway.enabled): nginx in front of tritonserver in the same pod, holding the two limits
the pod's memory bound assumes (model_repository/memory.py): the request body size and the requests
in flight, which tritonserver does not bound. Its configuration is files/gateway/*.conf, written by
model_repository/gateway.py from memory.py (a chart test checks they are current); it listens on the
pod's ports 8000/8001 and forwards to tritonserver on loopback ports 18000/18001.
*/}}
{{- define "paddleclas-triton.gatewayContainer" -}}
- name: gateway
  image: {{ printf "%s:%s" .Values.gateway.image.repository .Values.gateway.image.tag }}
  imagePullPolicy: {{ .Values.gateway.image.pullPolicy }}
  command: ["nginx", "-e", "stderr", "-c", "/etc/paddleclas-gateway/nginx.conf", "-g", "daemon off;"]
  ports:
    {{- if .Values.server.httpEnabled }}
    - name: http
      containerPort: 8000
      protocol: TCP
    {{- end }}
    - name: grpc
      containerPort: 8001
      protocol: TCP
  resources:
    {{- toYaml .Values.gateway.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: gateway-config
      mountPath: /etc/paddleclas-gateway
      readOnly: true
    - name: gateway-state
      mountPath: /tmp/nginx
{{- end }}

{{- define "paddleclas-triton.gatewayVolumes" -}}
- name: gateway-config
  configMap:
    name: {{ include "paddleclas-triton.fullname" . }}-gateway
    items:
      - key: {{ .Values.server.httpEnabled | ternary "nginx.conf" "nginx-grpc-only.conf" }}
        path: nginx.conf
- name: gateway-state
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
