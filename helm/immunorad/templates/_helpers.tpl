{{/* Names ----------------------------------------------------------------------------------- */}}

{{- define "immunorad.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name; role objects append "-api", "-dicom", "-worker" (so 52 chars max). */}}
{{- define "immunorad.fullname" -}}
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

{{- define "immunorad.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: call with (dict "root" $ "component" "api"). */}}
{{- define "immunorad.labels" -}}
helm.sh/chart: {{ include "immunorad.chart" .root }}
{{ include "immunorad.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: immunorad
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "immunorad.selectorLabels" -}}
app.kubernetes.io/name: {{ include "immunorad.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "immunorad.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "immunorad.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images ---------------------------------------------------------------------------------- */}}

{{- define "immunorad.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "immunorad.postgresql.image" -}}
{{- $image := .Values.postgresql.image }}
{{- if $image.registry }}
{{- printf "%s/%s:%s" $image.registry $image.repository $image.tag }}
{{- else }}
{{- printf "%s:%s" $image.repository $image.tag }}
{{- end }}
{{- end }}

{{/* Secrets and database ------------------------------------------------------------------- */}}

{{/* The Secret whose keys become the roles' environment (IMMUNORAD_DATABASE_URL, tokens). */}}
{{- define "immunorad.secretName" -}}
{{- default (include "immunorad.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* A StatefulSet name must leave room for the 11-character revision hash in a 63-character label. */}}
{{- define "immunorad.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "immunorad.fullname" . | trunc 41 | trimSuffix "-") }}
{{- end }}

{{- define "immunorad.postgresql.secretName" -}}
{{- default (include "immunorad.postgresql.fullname" .) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{- define "immunorad.postgresql.passwordKey" -}}
{{- if .Values.postgresql.auth.existingSecret }}
{{- .Values.postgresql.auth.passwordKey }}
{{- else -}}
password
{{- end }}
{{- end }}

{{/*
Refuse a release that has no database: the roles would start and fail their readiness probes forever.
*/}}
{{- define "immunorad.validateDatabase" -}}
{{- if not (or .Values.postgresql.enabled .Values.externalDatabase.url .Values.secrets.existingSecret) }}
{{- fail "immunorad: no database. Set externalDatabase.url, or secrets.existingSecret (with key IMMUNORAD_DATABASE_URL), or postgresql.enabled=true." }}
{{- end }}
{{- if and .Values.dicom.tls.enabled (not .Values.dicom.tls.existingSecret) }}
{{- fail "immunorad: dicom.tls.enabled needs dicom.tls.existingSecret (a Secret with the certificate and key)." }}
{{- end }}
{{- end }}

{{/*
With the bundled PostgreSQL the database URL is assembled by Kubernetes from the password Secret
($(VAR) expansion), so the password lives in exactly one Secret. It overrides any
IMMUNORAD_DATABASE_URL from envFrom because explicit env entries win.
*/}}
{{- define "immunorad.postgresql.databaseUrlEnv" -}}
- name: IMMUNORAD_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "immunorad.postgresql.secretName" . }}
      key: {{ include "immunorad.postgresql.passwordKey" . }}
- name: IMMUNORAD_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(IMMUNORAD_DB_PASSWORD)@%s:5432/%s" .Values.postgresql.auth.username (include "immunorad.postgresql.fullname" .) .Values.postgresql.auth.database | quote }}
{{- end }}

{{/* Pod parts shared by the three roles ---------------------------------------------------- */}}

{{/* Environment of a role container: call with (dict "root" $ "role" "api"). */}}
{{- define "immunorad.roleEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "immunorad.fullname" .root }}
  - secretRef:
      name: {{ include "immunorad.secretName" .root }}
{{- $env := include "immunorad.roleEnvEntries" . }}
{{- if trim $env }}
env:
  {{- $env | trim | nindent 2 }}
{{- end }}
{{- end }}

{{- define "immunorad.roleEnvEntries" -}}
{{- if .root.Values.postgresql.enabled }}
{{ include "immunorad.postgresql.databaseUrlEnv" .root }}
{{- end }}
{{- if eq .role "api" }}
- name: IMMUNORAD_GUNICORN_WORKERS
  value: {{ .root.Values.api.gunicornWorkers | quote }}
- name: IMMUNORAD_GUNICORN_THREADS
  value: {{ .root.Values.api.gunicornThreads | quote }}
- name: IMMUNORAD_GUNICORN_TIMEOUT_SECONDS
  value: {{ .root.Values.api.gunicornTimeoutSeconds | quote }}
- name: IMMUNORAD_GUNICORN_KEEPALIVE_SECONDS
  value: {{ .root.Values.api.gunicornKeepaliveSeconds | quote }}
- name: IMMUNORAD_CDS_FETCH_CONCURRENCY
  value: {{ .root.Values.api.cdsFetchConcurrency | quote }}
- name: IMMUNORAD_CDS_FETCH_TIMEOUT_SECONDS
  value: {{ .root.Values.api.cdsFetchTimeoutSeconds | quote }}
{{- end }}
{{- if and (eq .role "worker") .root.Values.ehrAuth.privateKeySecret }}
- name: IMMUNORAD_EHR_PRIVATE_KEY
  value: {{ printf "/etc/immunorad/ehr-key/%s" .root.Values.ehrAuth.privateKeyKey | quote }}
{{- end }}
{{- if and (eq .role "dicom") .root.Values.dicom.tls.enabled }}
- name: IMMUNORAD_DICOM_TLS_CERT
  value: {{ printf "/etc/immunorad/dicom-tls/%s" .root.Values.dicom.tls.certKey | quote }}
- name: IMMUNORAD_DICOM_TLS_KEY
  value: {{ printf "/etc/immunorad/dicom-tls/%s" .root.Values.dicom.tls.keyKey | quote }}
{{- with .root.Values.dicom.tls.caKey }}
- name: IMMUNORAD_DICOM_TLS_CA
  value: {{ printf "/etc/immunorad/dicom-tls/%s" . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Liveness on /healthz, readiness on /readyz, startup on /healthz; call with (dict "root" $ "port" "http"). */}}
{{- define "immunorad.probes" -}}
{{- $probes := .root.Values.probes -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: {{ $probes.startup.periodSeconds }}
  timeoutSeconds: {{ $probes.startup.timeoutSeconds }}
  failureThreshold: {{ $probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: {{ $probes.liveness.periodSeconds }}
  timeoutSeconds: {{ $probes.liveness.timeoutSeconds }}
  failureThreshold: {{ $probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: {{ $probes.readiness.periodSeconds }}
  timeoutSeconds: {{ $probes.readiness.timeoutSeconds }}
  failureThreshold: {{ $probes.readiness.failureThreshold }}
{{- end }}

{{/* Pod-template annotations: config checksums roll the pods when settings change; call with (dict "root" $ "role" "api" "port" 8080). */}}
{{- define "immunorad.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
{{- if not .root.Values.secrets.existingSecret }}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- end }}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with (index .root.Values .role).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Scheduling: call with (dict "root" $ "role" "api"). */}}
{{- define "immunorad.scheduling" -}}
{{- $values := index .root.Values .role }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
{{- if $values.topologySpreadConstraints }}
  {{- toYaml $values.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "immunorad.selectorLabels" (dict "root" .root "component" .role) | nindent 8 }}
{{- end }}
{{- end }}

{{/* Common pod-spec fields of the role Deployments: call with (dict "root" $ "role" "api"). */}}
{{- define "immunorad.podSpecCommon" -}}
serviceAccountName: {{ include "immunorad.serviceAccountName" .root }}
automountServiceAccountToken: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ (index .root.Values .role).terminationGracePeriodSeconds }}
{{ include "immunorad.scheduling" . | trim }}
{{- end }}

{{/* The writable /tmp (IMMUNORAD_VAR_DIR lives under it). */}}
{{- define "immunorad.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- end }}

{{/*
A generated credential of the chart's Secret, base64-encoded: the value given, else the one an
earlier install stored (lookup; empty when rendering offline), else a new random one. Every pod
must use the same API token and pseudonym key, so they are never left to the pods to generate.
Call with (dict "root" $ "key" "IMMUNORAD_API_TOKEN" "value" .Values.secrets.apiToken).
*/}}
{{- define "immunorad.generatedSecretB64" -}}
{{- if .value }}
{{- .value | b64enc }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "immunorad.fullname" .root) }}
{{- $stored := "" }}
{{- if $existing }}
{{- $stored = index ($existing.data | default dict) .key | default "" }}
{{- end }}
{{- $stored | default (randAlphaNum 48 | b64enc) }}
{{- end }}
{{- end }}

{{/* The bundled PostgreSQL's password, base64-encoded; same rules as the API token. */}}
{{- define "immunorad.postgresql.passwordB64" -}}
{{- if .Values.postgresql.auth.password }}
{{- .Values.postgresql.auth.password | b64enc }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "immunorad.postgresql.fullname" .) }}
{{- $stored := "" }}
{{- if $existing }}
{{- $stored = index ($existing.data | default dict) "password" | default "" }}
{{- end }}
{{- $stored | default (randAlphaNum 32 | b64enc) }}
{{- end }}
{{- end }}

{{/* IMMUNORAD_PUBLIC_URL: as given, else derived from the api Ingress, else empty (the app's default). */}}
{{- define "immunorad.publicUrl" -}}
{{- if .Values.config.publicUrl }}
{{- .Values.config.publicUrl }}
{{- else if and .Values.api.ingress.enabled .Values.api.ingress.hosts }}
{{- $host := (first .Values.api.ingress.hosts).host }}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.api.ingress.tls))) $host }}
{{- end }}
{{- end }}

{{/* IMMUNORAD_CDS_ISSUERS from config.cdsClients: "iss|jwks_url,iss2|jwks_url2". */}}
{{- define "immunorad.cdsIssuers" -}}
{{- $pairs := list -}}
{{- range . }}{{ $pairs = append $pairs (printf "%s|%s" .issuer .jwksUrl) }}{{ end -}}
{{- join "," $pairs -}}
{{- end }}

{{/* IMMUNORAD_CDS_FHIR_SERVERS from config.cdsClients with a fhirServer: "iss|fhir_base,...". */}}
{{- define "immunorad.cdsFhirServers" -}}
{{- $pairs := list -}}
{{- range . }}{{ if .fhirServer }}{{ $pairs = append $pairs (printf "%s|%s" .issuer .fhirServer) }}{{ end }}{{ end -}}
{{- join "," $pairs -}}
{{- end }}
