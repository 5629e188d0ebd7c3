{{/* Names, labels and the rendered gateway config for the ai-gateway chart. */}}

{{- define "ai-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release name alone when it already contains the chart name (the usual `helm install ai-gateway`). */}}
{{- define "ai-gateway.fullname" -}}
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

{{- define "ai-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ai-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ai-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ai-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ai-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ai-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ai-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
eBPF mode as a string. `mode: off` in a values file is the YAML 1.1 boolean false, so map it back.
*/}}
{{- define "ai-gateway.ebpfMode" -}}
{{- $mode := toString .Values.ebpf.mode }}
{{- if eq $mode "false" }}off{{ else }}{{ $mode }}{{ end }}
{{- end }}

{{- define "ai-gateway.ebpfEnabled" -}}
{{- if ne (include "ai-gateway.ebpfMode" .) "off" }}true{{ end }}
{{- end }}

{{/*
Container capabilities as a JSON list (use with fromJsonArray). Least privilege first: CAP_BPF
(load programs, create maps), CAP_NET_ADMIN (cgroup sock_addr / sock_ops / sk_msg program types),
CAP_PERFMON (tp_btf tracing programs, reading kernel memory through BPF helpers). No capability at
all when eBPF is off: binding port >= 1024 on the host network needs none.
*/}}
{{- define "ai-gateway.capabilities" -}}
{{- $caps := list }}
{{- if include "ai-gateway.ebpfEnabled" . }}
{{- $caps = list "BPF" "NET_ADMIN" "PERFMON" }}
{{- if .Values.security.sysAdmin }}
{{- $caps = append $caps "SYS_ADMIN" }}
{{- end }}
{{- end }}
{{- $caps = concat $caps .Values.security.extraCapabilities | uniq }}
{{- toJson $caps }}
{{- end }}

{{/* Render-time checks, each naming the value to fix. Included by the DaemonSet. */}}
{{- define "ai-gateway.validate" -}}
{{- $mode := include "ai-gateway.ebpfMode" . }}
{{- if not (has $mode (list "auto" "required" "off")) }}
{{- fail (printf "ebpf.mode: %q is not one of auto, required, off" $mode) }}
{{- end }}
{{- if and (include "ai-gateway.ebpfEnabled" .) .Values.ebpf.steerService }}
{{- if not .Values.service.enabled }}
{{- fail "ebpf.steerService: true needs service.enabled: true (the steered address is the Service's ClusterIP)" }}
{{- end }}
{{- if or (empty .Values.service.clusterIP) (eq (toString .Values.service.clusterIP) "None") }}
{{- fail "ebpf.steerService: true needs a fixed service.clusterIP inside the cluster's service CIDR (or set ebpf.steerService: false)" }}
{{- end }}
{{- end }}
{{- if .Values.tracing.enabled }}
{{- if not (or .Values.tracing.otlpEndpoint .Values.tracing.otlpSecret.endpointKey) }}
{{- fail "tracing.enabled: true needs tracing.otlpEndpoint or tracing.otlpSecret.endpointKey" }}
{{- end }}
{{- if and (or .Values.tracing.otlpSecret.endpointKey .Values.tracing.otlpSecret.headersKey) (not .Values.tracing.otlpSecret.name) }}
{{- fail "tracing.otlpSecret.endpointKey/headersKey need tracing.otlpSecret.name" }}
{{- end }}
{{- end }}
{{- if .Values.updateStrategy.rollingUpdate }}
{{- if and (eq .Values.updateStrategy.type "RollingUpdate") (ne (toString (default 0 .Values.updateStrategy.rollingUpdate.maxSurge)) "0") }}
{{- fail "updateStrategy.rollingUpdate.maxSurge must be 0: the old and new pod on a node would bind the same host ports" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
config.yaml in agentgateway's standalone format. `config.ebpf` is this gateway's extension.
*/}}
{{- define "ai-gateway.config" -}}
{{- $v := .Values }}
{{- $mode := include "ai-gateway.ebpfMode" . }}
{{- $ebpf := dict "mode" $mode }}
{{- if ne $mode "off" }}
{{- $steer := list }}
{{- if $v.ebpf.steerService }}
{{- $steer = append $steer (dict "address" (printf "%s:%d" $v.service.clusterIP (int $v.service.port)) "bind" (int $v.gateway.port)) }}
{{- end }}
{{- $steer = concat $steer $v.ebpf.extraSteer }}
{{- $_ := set $ebpf "cgroup" $v.ebpf.cgroup }}
{{- $_ := set $ebpf "steer" (ternary $steer (list) (gt (len $steer) 0)) }}
{{- end }}
{{- $cfg := dict
  "adminAddr" $v.gateway.adminAddr
  "statsAddr" (printf "0.0.0.0:%d" (int $v.gateway.statsPort))
  "readinessAddr" (printf "0.0.0.0:%d" (int $v.gateway.readinessPort))
  "connectionTerminationDeadline" (printf "%ds" (int $v.drain.deadlineSeconds))
  "logging" $v.gateway.logging
  "ebpf" $ebpf }}
{{- if $v.tracing.enabled }}
{{- $tracing := dict
  "otlpEndpoint" "$OTEL_EXPORTER_OTLP_ENDPOINT"
  "otlpProtocol" $v.tracing.otlpProtocol
  "randomSampling" $v.tracing.randomSampling
  "clientSampling" $v.tracing.clientSampling }}
{{- with $v.tracing.fields }}
{{- $_ := set $tracing "fields" . }}
{{- end }}
{{- $_ := set $cfg "tracing" $tracing }}
{{- end }}
{{- $cfg = merge $cfg (deepCopy $v.gateway.extraConfig) }}
{{- $binds := list (dict "port" (int $v.gateway.port) "listeners" (list (dict "routes" $v.gateway.routes))) -}}
config:
{{- toYaml $cfg | nindent 2 }}
binds:
{{- toYaml $binds | nindent 2 }}
{{- with $v.gateway.extraTopLevel }}
{{ toYaml . }}
{{- end }}
{{- end }}
