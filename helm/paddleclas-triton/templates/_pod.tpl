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
{{- if .Values.trtPlans.enabled }}
- name: repository
  mountPath: /repository
  readOnly: true
{{- else if has .Values.modelRepository.source (list "pvc" "nfs") }}
- name: models
  mountPath: /models
  readOnly: true
  {{- if and (eq .Values.modelRepository.source "pvc") .Values.modelRepository.pvc.subPath }}
  subPath: {{ .Values.modelRepository.pvc.subPath }}
  {{- end }}
{{- end }}
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
{{- if .Values.trtPlans.enabled }}
- name: repository
  emptyDir:
    sizeLimit: {{ .Values.trtPlans.stagingSizeLimit }}
- name: trt-cache
  {{- if .Values.trtPlans.cacheClaimName }}
  persistentVolumeClaim:
    claimName: {{ .Values.trtPlans.cacheClaimName }}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: trt-scripts
  configMap:
    name: {{ include "paddleclas-triton.fullname" . }}-trt
{{- end }}
{{- end }}

{{/*
TensorRT plans, built where they run. "stage-repository" (the server image, which also tells the
server's TensorRT version) copies the repository into a writable volume; "build-trt-plans" (the
TensorRT image of the same release) runs trtexec and points each network at its plan.
*/}}
{{- define "paddleclas-triton.trtInitContainers" -}}
{{- $mountModels := has .Values.modelRepository.source (list "pvc" "nfs") }}
- name: stage-repository
  image: {{ include "paddleclas-triton.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["python3", "/scripts/build_trt_plans.py", "stage"]
  args:
    - --source={{ include "paddleclas-triton.stagingSource" . }}
    - --target=/repository
    {{- with .Values.trtPlans.serverTensorrtVersion }}
    - --server-tensorrt-version={{ . }}
    {{- end }}
  # Requests equal limits in every container, or the pod loses its Guaranteed QoS class.
  resources:
    requests:
      cpu: "1"
      memory: 1Gi
    limits:
      cpu: "1"
      memory: 1Gi
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: repository
      mountPath: /repository
    - name: trt-scripts
      mountPath: /scripts
      readOnly: true
    {{- if $mountModels }}
    - name: models
      mountPath: /models
      readOnly: true
      {{- if and (eq .Values.modelRepository.source "pvc") .Values.modelRepository.pvc.subPath }}
      subPath: {{ .Values.modelRepository.pvc.subPath }}
      {{- end }}
    {{- end }}
- name: build-trt-plans
  image: {{ printf "%s:%s" .Values.trtPlans.image.repository .Values.trtPlans.image.tag }}
  imagePullPolicy: IfNotPresent
  command: ["python3", "/scripts/build_trt_plans.py", "build"]
  args:
    - --repository=/repository
    - --cache=/trt-cache
    - --precision={{ .Values.trtPlans.precision }}
    - --workspace-mib={{ .Values.trtPlans.workspaceMiB }}
  env:
    - name: HOME
      value: /tmp
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
    - name: trt-scripts
      mountPath: /scripts
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}
