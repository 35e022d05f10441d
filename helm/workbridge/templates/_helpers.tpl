{{/* Names, labels and the pod settings shared by the Deployments. */}}

{{- define "workbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "workbridge.fullname" -}}
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

{{/* Name of a component's objects: <fullname>-<component>, within 63 characters. */}}
{{- define "workbridge.componentName" -}}
{{- $full := include "workbridge.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $full .component }}
{{- end }}

{{- define "workbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "workbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "workbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "workbridge.labels" -}}
helm.sh/chart: {{ include "workbridge.chart" . }}
{{ include "workbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: workbridge
{{- end }}

{{/* (dict "root" $ "component" "webhooks") */}}
{{- define "workbridge.componentSelectorLabels" -}}
{{ include "workbridge.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "workbridge.componentLabels" -}}
{{ include "workbridge.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "workbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "workbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "workbridge.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The components (Deployments) the chart knows, in order. */}}
{{- define "workbridge.components" -}}
webhooks workers
{{- end }}

{{/*
A pod setting for a component: the component's value when set (non-empty), else the global one.
(dict "root" $ "component" "webhooks" "key" "nodeSelector")
*/}}
{{- define "workbridge.podSetting" -}}
{{- $c := index .root.Values .component }}
{{- $v := index $c .key }}
{{- if not $v }}{{ $v = index .root.Values .key }}{{ end }}
{{- if $v }}{{ toYaml $v }}{{ end }}
{{- end }}

{{/* preStop sleep of a component (only webhooks have one). */}}
{{- define "workbridge.preStopSeconds" -}}
{{- $c := index .root.Values .component }}
{{- int (default 0 (get $c "preStopSleepSeconds")) }}
{{- end }}

{{/* terminationGracePeriodSeconds: above preStop + the app's drain time. */}}
{{- define "workbridge.terminationGrace" -}}
{{- $c := index .root.Values .component }}
{{- $preStop := int (include "workbridge.preStopSeconds" .) }}
{{- $drain := .root.Values.server.shutdown_grace_s | float64 | ceil | int }}
{{- $explicit := get $c "terminationGracePeriodSeconds" }}
{{- if kindIs "invalid" $explicit }}
{{- add $preStop $drain 10 }}
{{- else if le (float64 $explicit) (addf $preStop .root.Values.server.shutdown_grace_s) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds (%d) + server.shutdown_grace_s (%v): Kubernetes would kill the pod while it drains" .component $explicit $preStop .root.Values.server.shutdown_grace_s) }}
{{- else }}
{{- int $explicit }}
{{- end }}
{{- end }}

{{/* Ports named in a comma-separated host:port list (bootstrap servers), as a YAML list. */}}
{{- define "workbridge.kafkaPorts" -}}
{{- $ports := list }}
{{- range $server := splitList "," .Values.kafka.bootstrap_servers }}
{{- $server = trim $server }}
{{- if $server }}
{{- $parts := splitList ":" $server }}
{{- $port := last $parts }}
{{- if or (eq (len $parts) 1) (not (regexMatch "^[0-9]+$" $port)) }}
{{- fail (printf "kafka.bootstrap_servers: %q needs a port (host:port)" $server) }}
{{- end }}
{{- $ports = append $ports (int $port) }}
{{- end }}
{{- end }}
{{- toYaml (uniq $ports) }}
{{- end }}

{{/* Ports of the instances' base_url (443 for https, 80 for http), as a YAML list. */}}
{{- define "workbridge.vendorPorts" -}}
{{- $ports := list }}
{{- range .Values.instances }}
{{- $url := urlParse .base_url }}
{{- $hostPort := splitList ":" $url.host }}
{{- if gt (len $hostPort) 1 }}
{{- $ports = append $ports (int (last $hostPort)) }}
{{- else if eq $url.scheme "http" }}
{{- $ports = append $ports 80 }}
{{- else }}
{{- $ports = append $ports 443 }}
{{- end }}
{{- end }}
{{- toYaml (uniq $ports) }}
{{- end }}
