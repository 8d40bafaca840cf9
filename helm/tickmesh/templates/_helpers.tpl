{{/* Names, labels and the pieces every service template shares. */}}

{{- define "tickmesh.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tickmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tickmesh
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "bars") */}}
{{- define "tickmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tickmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The chart's own Secret: whatever credential no existing Secret supplies, generated. */}}
{{- define "tickmesh.chartSecretName" -}}
{{- printf "%s-secrets" (include "tickmesh.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the gateway's JWT signing key (key `jwt-secret`). */}}
{{- define "tickmesh.secretName" -}}
{{- default (include "tickmesh.chartSecretName" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "tickmesh.postgresSecretName" -}}
{{- default (include "tickmesh.chartSecretName" .) .Values.postgresql.existingSecret -}}
{{- end -}}

{{- define "tickmesh.redisSecretName" -}}
{{- default (include "tickmesh.chartSecretName" .) .Values.redis.existingSecret -}}
{{- end -}}

{{/* A role's TLS Secret (ca.crt, tls.crt, tls.key): (dict "root" $ "role" "bars") */}}
{{- define "tickmesh.tlsSecretName" -}}
{{- $existing := index (default dict .root.Values.tls.existingSecrets) .role -}}
{{- default (printf "%s-%s-tls" (include "tickmesh.fullname" .root) .role) $existing -}}
{{- end -}}

{{/*
The plaintext port that serves grpc.health.v1 alone, for probes (which carry no client
certificate): the gRPC port + 100 (sec-plan "Contracts").
*/}}
{{- define "tickmesh.healthPort" -}}
{{- add (int .) 100 -}}
{{- end -}}

{{/* The ClusterIP address of a gRPC component: (dict "root" $ "component" "bars" "port" 50052) */}}
{{- define "tickmesh.address" -}}
{{- printf "%s-%s.%s.svc.cluster.local:%v" (include "tickmesh.fullname" .root) .component .root.Release.Namespace .port -}}
{{- end -}}

{{/* The address of bar shard `shard`, by its pod DNS name through the headless Service. */}}
{{- define "tickmesh.barsShardAddress" -}}
{{- $name := include "tickmesh.fullname" .root -}}
{{- printf "%s-bars-%v.%s-bars-shards.%s.svc.cluster.local:%v" $name .shard $name .root.Release.Namespace .root.Values.bars.grpcPort -}}
{{- end -}}

{{/*
TICKMESH_BARS_ADDRESSES: every bar shard's address in shard order, comma-separated. Every
service gets the same list: collector shard i publishes to entry i, analytics consumes each
entry, the gateway sends an instrument to entry crc32("<venue>:<symbol>") mod len.
*/}}
{{- define "tickmesh.barsShardAddresses" -}}
{{- $addresses := list -}}
{{- range $shard := until (int .Values.bars.shards) -}}
{{- $addresses = append $addresses (include "tickmesh.barsShardAddress" (dict "root" $ "shard" $shard)) -}}
{{- end -}}
{{- join "," $addresses -}}
{{- end -}}

{{/* The address of analytics shard `shard`, by its pod DNS name through the headless Service. */}}
{{- define "tickmesh.analyticsShardAddress" -}}
{{- $name := include "tickmesh.fullname" .root -}}
{{- printf "%s-analytics-%v.%s-analytics-shards.%s.svc.cluster.local:%v" $name .shard $name .root.Release.Namespace .root.Values.analytics.grpcPort -}}
{{- end -}}

{{/*
TICKMESH_ANALYTICS_ADDRESSES with analytics.sharded: one analytics pod per bar shard, in shard
order; the gateway sends an instrument's analytics calls to entry crc32("<venue>:<symbol>") mod len.
*/}}
{{- define "tickmesh.analyticsShardAddresses" -}}
{{- $addresses := list -}}
{{- range $shard := until (int .Values.bars.shards) -}}
{{- $addresses = append $addresses (include "tickmesh.analyticsShardAddress" (dict "root" $ "shard" $shard)) -}}
{{- end -}}
{{- join "," $addresses -}}
{{- end -}}

{{/* Shards must pair one to one: collector shard i sends to bar shard i, which rejects others. */}}
{{- define "tickmesh.checkShards" -}}
{{- if lt (int .Values.bars.shards) 1 -}}
{{- fail "bars.shards must be at least 1" -}}
{{- end -}}
{{- if ne (int .Values.collector.shards) (int .Values.bars.shards) -}}
{{- fail (printf "collector.shards (%v) must equal bars.shards (%v): collector shard i collects the instruments bar shard i owns (crc32 of venue:symbol mod n == i) and sends them over one ingest stream to that shard, which rejects instruments of other shards" .Values.collector.shards .Values.bars.shards) -}}
{{- end -}}
{{- end -}}

{{/*
Settings every service reads (CommonSettings) and OpenTelemetry: (dict "root" $ "service" "bars")
*/}}
{{- define "tickmesh.commonEnv" -}}
{{- $root := .root -}}
- name: TICKMESH_ENVIRONMENT
  value: {{ $root.Values.environment | quote }}
- name: TICKMESH_LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
{{- /* Passwords come from Secrets and are expanded into the URLs by Kubernetes ($(VAR)
must be defined earlier in the list); the names lack the TICKMESH_ prefix so no settings
class reads them on their own. */}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "tickmesh.postgresSecretName" $root }}
      key: {{ $root.Values.postgresql.passwordKey }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "tickmesh.redisSecretName" $root }}
      key: {{ $root.Values.redis.passwordKey }}
{{- $pg := $root.Values.postgresql }}
- name: TICKMESH_DATABASE_URL
  value: {{ printf "postgresql://%s:$(POSTGRES_PASSWORD)@%s:%v/%s%s" $pg.user $pg.host $pg.port $pg.database (ternary (printf "?%s" $pg.options) "" (ne $pg.options "")) | quote }}
{{- $redis := $root.Values.redis }}
- name: TICKMESH_REDIS_URL
  value: {{ printf "%s://:$(REDIS_PASSWORD)@%s:%v/%v" (ternary "rediss" "redis" $redis.tls) $redis.host $redis.port $redis.database | quote }}
- name: TICKMESH_TLS_DIR
  value: {{ $root.Values.tls.mountPath | quote }}
- name: TICKMESH_STARTUP_RETRY_SECONDS
  value: {{ $root.Values.startupRetrySeconds | quote }}
- name: TICKMESH_DRAIN_SECONDS
  value: {{ $root.Values.drainSeconds | quote }}
- name: TICKMESH_METRICS_HOST
  value: "0.0.0.0"
- name: TICKMESH_COLLECTOR_ADDRESS
  value: {{ include "tickmesh.address" (dict "root" $root "component" "collector" "port" $root.Values.collector.grpcPort) | quote }}
- name: TICKMESH_BARS_ADDRESSES
  value: {{ include "tickmesh.barsShardAddresses" $root | quote }}
{{- if $root.Values.analytics.sharded }}
- name: TICKMESH_ANALYTICS_ADDRESSES
  value: {{ include "tickmesh.analyticsShardAddresses" $root | quote }}
{{- else }}
- name: TICKMESH_ANALYTICS_ADDRESS
  value: {{ include "tickmesh.address" (dict "root" $root "component" "analytics" "port" $root.Values.analytics.grpcPort) | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "tickmesh-%s" .service | quote }}
{{- if $root.Values.opentelemetry.enabled }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $root.Values.opentelemetry.endpoint | quote }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name={{ $root.Release.Namespace }}"
{{- end -}}

{{/* The pod name first, so OTEL_RESOURCE_ATTRIBUTES can refer to it. */}}
{{- define "tickmesh.podNameEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{/* Extra settings from a service's `env` map. */}}
{{- define "tickmesh.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/*
gRPC health probes (grpc.health.v1) on the plaintext health-only port (the TLS port needs a
client certificate the kubelet does not have); startup allows for migrations and waits.
*/}}
{{- define "tickmesh.grpcProbes" -}}
startupProbe:
  grpc:
    port: {{ . }}
  periodSeconds: 5
  failureThreshold: 36
readinessProbe:
  grpc:
    port: {{ . }}
  periodSeconds: 10
  failureThreshold: 3
livenessProbe:
  grpc:
    port: {{ . }}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/*
Pod-level pieces every service shares: security, grace, scheduling, a writable /tmp, the
role's TLS Secret: (dict "root" $ "values" .Values.bars "role" "bars")
*/}}
{{- define "tickmesh.podSpec" -}}
{{- $root := .root -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  - name: tls
    secret:
      secretName: {{ include "tickmesh.tlsSecretName" (dict "root" $root "role" .role) }}
      # Owner root, group fsGroup: readable by the service's user, by nobody else.
      defaultMode: 0440
{{- end -}}

{{/* Container-level pieces every service shares. */}}
{{- define "tickmesh.container" -}}
{{- $root := .root -}}
image: {{ include "tickmesh.image" $root | quote }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
command: ["python", "-m", "tickmesh.{{ .service }}"]
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
resources:
  {{- toYaml .values.resources | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: tls
    mountPath: {{ $root.Values.tls.mountPath }}
    readOnly: true
{{- end -}}

{{/* A PodDisruptionBudget: (dict "root" $ "name" "..." "component" "bars" "pdb" .Values.bars.pdb "extra" (dict)) */}}
{{- define "tickmesh.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "tickmesh.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "tickmesh.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
      {{- with .extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
{{- end -}}

{{/* A CPU HorizontalPodAutoscaler for a Deployment. */}}
{{- define "tickmesh.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  labels:
    {{- include "tickmesh.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}
