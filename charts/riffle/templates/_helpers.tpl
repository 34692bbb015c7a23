{{/*
Names are fixed rather than derived from the release name: the operator writes
http://riffle-gateway.<namespace>.svc:4567 into every Stream's status and maintains the
ConfigMap riffle-gateway-routes, so those two names are part of the operator's contract.
*/}}
{{- define "riffle.operatorName" -}}riffle-operator{{- end -}}
{{- define "riffle.gatewayName" -}}riffle-gateway{{- end -}}
{{- define "riffle.routesName" -}}riffle-gateway-routes{{- end -}}

{{/* Cluster-scoped objects carry the namespace, so that a leftover of another install is not adopted silently. */}}
{{- define "riffle.clusterRoleName" -}}riffle-operator-{{ .Release.Namespace }}{{- end -}}

{{- define "riffle.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "riffle.tag" -}}{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "riffle.image" -}}{{ .Values.image.repository }}:{{ include "riffle.tag" . }}{{- end -}}
{{- define "riffle.operatorImage" -}}{{ .Values.image.operatorRepository }}:{{ include "riffle.tag" . }}{{- end -}}

{{/* Selector labels of one component; pass (dict "ctx" $ "component" "gateway"). */}}
{{- define "riffle.selectorLabels" -}}
app.kubernetes.io/name: riffle
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of a chart object of one component; pass (dict "ctx" $ "component" "gateway"). */}}
{{- define "riffle.labels" -}}
{{ include "riffle.selectorLabels" . }}
app.kubernetes.io/part-of: riffle
app.kubernetes.io/version: {{ include "riffle.tag" .ctx | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "riffle.chart" .ctx }}
{{- end -}}

{{/* Security context shared by the operator and gateway containers. */}}
{{- define "riffle.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Pod-level settings shared by the operator and gateway. */}}
{{- define "riffle.podCommon" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
