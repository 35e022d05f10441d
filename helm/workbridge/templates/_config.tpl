{{/*
The app's configuration file, rendered from values, and the Secret files it names.

"workbridge.secretFiles" is the one place that decides where each secret is mounted: the config
(`*_file` options, TLS files: kafka.tls and each instance's tls from its tlsSecret) and the
projected Secret volume are both built from it.
*/}}

{{- define "workbridge.secretsDir" -}}
/etc/workbridge/secrets
{{- end }}

{{- define "workbridge.configDir" -}}
/etc/workbridge/config
{{- end }}

{{/* The instance's name as the app computes it (default: the vendor id). */}}
{{- define "workbridge.instanceName" -}}
{{- default .vendor .name }}
{{- end }}

{{/*
Every secret file as a YAML list of {secret, key, path}: `path` is relative to secretsDir.
Also checks that each reference is complete.
*/}}
{{- define "workbridge.secretFiles" -}}
{{- $files := list }}
{{- $k := .Values.kafka }}
{{- if $k.tls.enabled }}
{{- with $k.tls.caSecret }}
{{- if .name }}
{{- $files = append $files (dict "secret" .name "key" (required "kafka.tls.caSecret.key is required when caSecret.name is set" .key) "path" "kafka/ca.crt") }}
{{- end }}
{{- end }}
{{- with $k.tls.clientCertSecret }}
{{- if .name }}
{{- $files = append $files (dict "secret" .name "key" (required "kafka.tls.clientCertSecret.certKey is required when clientCertSecret.name is set" .certKey) "path" "kafka/client.crt") }}
{{- $files = append $files (dict "secret" .name "key" (required "kafka.tls.clientCertSecret.keyKey is required when clientCertSecret.name is set" .keyKey) "path" "kafka/client.key") }}
{{- if .keyPasswordKey }}
{{- $files = append $files (dict "secret" .name "key" .keyPasswordKey "path" "kafka/client-key-password") }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $k.sasl.enabled }}
{{- $name := required "kafka.sasl.passwordSecret.name is required when kafka.sasl.enabled: the SASL password comes from a Secret" $k.sasl.passwordSecret.name }}
{{- $files = append $files (dict "secret" $name "key" (required "kafka.sasl.passwordSecret.key is required" $k.sasl.passwordSecret.key) "path" "kafka/sasl-password") }}
{{- end }}
{{- range $i, $inst := .Values.instances }}
{{- $name := include "workbridge.instanceName" $inst }}
{{- $keys := default dict $inst.secretKeys }}
{{- $creds := default dict $inst.credentials }}
{{- if and (or $keys $creds) (not $inst.existingSecret) }}
{{- fail (printf "instances[%d] (%s): secretKeys/credentials name keys of a Secret: set existingSecret to that Secret's name" $i $name) }}
{{- end }}
{{- range $appKey := list "api_key" "webhook_secret" }}
{{- if get $keys $appKey }}
{{- $files = append $files (dict "secret" $inst.existingSecret "key" (get $keys $appKey) "path" (printf "instances/%s/%s" $name $appKey)) }}
{{- end }}
{{- end }}
{{- range $cred := keys $creds | sortAlpha }}
{{- $files = append $files (dict "secret" $inst.existingSecret "key" (get $creds $cred) "path" (printf "instances/%s/credentials/%s" $name $cred)) }}
{{- end }}
{{- /* TLS towards the vendor: a Secret of its own (a kubernetes.io/tls Secret, cert-manager's). */}}
{{- $t := default dict $inst.tlsSecret }}
{{- if $t.name }}
{{- $where := printf "instances[%d] (%s): tlsSecret" $i $name }}
{{- if and (not $t.certKey) (not $t.keyKey) (not $t.caKey) }}
{{- fail (printf "%s.certKey and tlsSecret.keyKey are required when tlsSecret.name is set: the keys of Secret %s holding the client certificate and its private key (PEM); for a private CA alone, caKey" $where $t.name) }}
{{- end }}
{{- if or $t.certKey $t.keyKey }}
{{- $files = append $files (dict "secret" $t.name "key" (required (printf "%s.certKey is required with tlsSecret.keyKey: the key of Secret %s holding the client certificate" $where $t.name) $t.certKey) "path" (printf "instances/%s/tls/client.crt" $name)) }}
{{- $files = append $files (dict "secret" $t.name "key" (required (printf "%s.keyKey is required with tlsSecret.certKey: the key of Secret %s holding the client certificate's private key" $where $t.name) $t.keyKey) "path" (printf "instances/%s/tls/client.key" $name)) }}
{{- end }}
{{- if $t.keyPasswordKey }}
{{- if not $t.certKey }}
{{- fail (printf "%s.keyPasswordKey is the password of the client certificate's key: set certKey and keyKey too" $where) }}
{{- end }}
{{- $files = append $files (dict "secret" $t.name "key" $t.keyPasswordKey "path" (printf "instances/%s/tls/client-key-password" $name)) }}
{{- end }}
{{- if $t.caKey }}
{{- $files = append $files (dict "secret" $t.name "key" $t.caKey "path" (printf "instances/%s/tls/ca.crt" $name)) }}
{{- end }}
{{- else if or $t.certKey $t.keyKey $t.caKey $t.keyPasswordKey }}
{{- fail (printf "instances[%d] (%s): tlsSecret.name is required: certKey, keyKey, caKey and keyPasswordKey name keys of that Secret" $i $name) }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/* The config as a dict-shaped YAML; (dict "root" $ "component" "webhooks"). */}}
{{- define "workbridge.config" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $dir := include "workbridge.secretsDir" $root }}
{{- $k := $v.kafka }}

{{- /* kafka */}}
{{- $protocol := "PLAINTEXT" }}
{{- if and $k.tls.enabled $k.sasl.enabled }}{{ $protocol = "SASL_SSL" }}
{{- else if $k.tls.enabled }}{{ $protocol = "SSL" }}
{{- else if $k.sasl.enabled }}{{ $protocol = "SASL_PLAINTEXT" }}
{{- end }}
{{- $topics := dict "create" $k.topics.create "partitions" (int $k.topics.partitions) "replication_factor" (int $k.topics.replication_factor) "ledger_retention_days" $k.topics.ledger_retention_days }}
{{- if not (kindIs "invalid" $k.topics.min_insync_replicas) }}
{{- $_ := set $topics "min_insync_replicas" (int $k.topics.min_insync_replicas) }}
{{- end }}
{{- $kafka := dict "bootstrap_servers" (required "kafka.bootstrap_servers is required" $k.bootstrap_servers) "client_id" $k.client_id "topic_prefix" $k.topic_prefix "security_protocol" $protocol "topics" $topics "send_timeout_s" $k.send_timeout_s "linger_ms" (int $k.linger_ms) "request_timeout_ms" (int $k.request_timeout_ms) }}
{{- if $k.tls.enabled }}
{{- $tls := dict "check_hostname" $k.tls.check_hostname }}
{{- if $k.tls.caSecret.name }}
{{- $_ := set $tls "ca_file" (printf "%s/kafka/ca.crt" $dir) }}
{{- end }}
{{- if $k.tls.clientCertSecret.name }}
{{- $_ := set $tls "cert_file" (printf "%s/kafka/client.crt" $dir) }}
{{- $_ := set $tls "key_file" (printf "%s/kafka/client.key" $dir) }}
{{- if $k.tls.clientCertSecret.keyPasswordKey }}
{{- $_ := set $tls "key_password_file" (printf "%s/kafka/client-key-password" $dir) }}
{{- end }}
{{- end }}
{{- $_ := set $kafka "tls" $tls }}
{{- end }}
{{- if $k.sasl.enabled }}
{{- $_ := set $kafka "sasl" (dict "mechanism" $k.sasl.mechanism "username" (required "kafka.sasl.username is required when kafka.sasl.enabled" $k.sasl.username) "password_file" (printf "%s/kafka/sasl-password" $dir)) }}
{{- end }}

{{- /* server: host and port are what the probes and Services use */}}
{{- $s := $v.server }}
{{- $server := dict "host" "0.0.0.0" "port" (int $s.port) "max_body_bytes" (int $s.max_body_bytes) "max_in_flight" (int $s.max_in_flight) "shutdown_grace_s" $s.shutdown_grace_s "shutdown_delay_s" $s.shutdown_delay_s "header_timeout_s" $s.header_timeout_s "keepalive_timeout_s" $s.keepalive_timeout_s "max_header_bytes" (int $s.max_header_bytes) "max_headers" (int $s.max_headers) "trusted_proxies" (default list $s.trusted_proxies) }}

{{- /* roles: the only difference between the Deployments' configs */}}
{{- $roles := dict "webhooks" true "pollers" false "commands" false }}
{{- if eq .component "workers" }}
{{- $roles = dict "webhooks" false "pollers" $v.workers.roles.pollers "commands" $v.workers.roles.commands }}
{{- end }}

{{- /* instances */}}
{{- $instances := list }}
{{- $seen := dict }}
{{- range $i, $src := $v.instances }}
{{- $name := include "workbridge.instanceName" $src }}
{{- if hasKey $seen $name }}
{{- fail (printf "instances[%d].name: %q is used by two instances; names must be unique" $i $name) }}
{{- end }}
{{- $_ := set $seen $name true }}
{{- $inst := dict "vendor" $src.vendor "name" $name "base_url" $src.base_url }}
{{- range $key := list "content_mode" "http_timeout_s" "webhooks" "polling" "commands" "options" }}
{{- if and (hasKey $src $key) (not (kindIs "invalid" (get $src $key))) }}
{{- $_ := set $inst $key (deepCopy (get $src $key)) }}
{{- end }}
{{- end }}
{{- /* The budget of the whole deployment: the processes that call the vendor share it at run
time through Kafka (group <prefix>.<name>.budget), so nothing in it is per process. */}}
{{- $limit := $src.rate_limit }}
{{- if and $limit (hasKey $limit "processes") }}
{{- fail (printf "instances[%d] (%s): rate_limit.processes is no longer needed: the worker pods share rate_limit.requests at run time through Kafka (consumer group %s.%s.budget); remove it" $i $name $k.topic_prefix $name) }}
{{- end }}
{{- if not $limit }}{{ $limit = get $v.vendorRateLimits $src.vendor }}{{ end }}
{{- if $limit }}
{{- $_ := set $inst "rate_limit" (deepCopy $limit) }}
{{- end }}
{{- $keys := default dict $src.secretKeys }}
{{- range $appKey := list "api_key" "webhook_secret" }}
{{- if get $keys $appKey }}
{{- $_ := set $inst (printf "%s_file" $appKey) (printf "%s/instances/%s/%s" $dir $name $appKey) }}
{{- end }}
{{- end }}
{{- $creds := dict }}
{{- range $cred := keys (default dict $src.credentials) }}
{{- $_ := set $creds (printf "%s_file" $cred) (printf "%s/instances/%s/credentials/%s" $dir $name $cred) }}
{{- end }}
{{- if $creds }}
{{- $_ := set $inst "credentials" $creds }}
{{- end }}
{{- /* The same files as in workbridge.secretFiles (which checks tlsSecret). */}}
{{- $t := default dict $src.tlsSecret }}
{{- if $t.name }}
{{- $tls := dict }}
{{- if $t.certKey }}
{{- $_ := set $tls "cert_file" (printf "%s/instances/%s/tls/client.crt" $dir $name) }}
{{- $_ := set $tls "key_file" (printf "%s/instances/%s/tls/client.key" $dir $name) }}
{{- end }}
{{- if $t.keyPasswordKey }}
{{- $_ := set $tls "key_password_file" (printf "%s/instances/%s/tls/client-key-password" $dir $name) }}
{{- end }}
{{- if $t.caKey }}
{{- $_ := set $tls "ca_file" (printf "%s/instances/%s/tls/ca.crt" $dir $name) }}
{{- end }}
{{- $_ := set $inst "tls" $tls }}
{{- end }}
{{- $instances = append $instances $inst }}
{{- end }}

{{- $config := dict "log_level" $v.log_level "kafka" $kafka "server" $server "roles" $roles "instances" $instances }}
{{- /* The idempotency ledger's on-disk index: the workers' volume (deployment.yaml) */}}
{{- /* An extraEnv WORKBRIDGE_LEDGER_DIR (a volume of the operator's own) still wins. */}}
{{- $ownDir := false }}
{{- range $e := default list $v.extraEnv }}{{ if eq $e.name "WORKBRIDGE_LEDGER_DIR" }}{{ $ownDir = true }}{{ end }}{{ end }}
{{- if and (eq .component "workers") $v.workers.roles.commands (not $ownDir) }}
{{- $_ := set $config "ledger" (dict "dir" "/var/lib/workbridge/ledger") }}
{{- end }}
{{- toYaml $config }}
{{- end }}
