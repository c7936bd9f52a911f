#!/usr/bin/env bash
# The vendor's request-signing recipe (Remote.It's "API Request Signing" page): one signed
# GraphQL POST, with date, openssl and curl. bench.py's user workload runs it once per call.
#
#   vendor_recipe.sh URL [DATA]      e.g. vendor_recipe.sh https://api.remote.it/graphql/v1
#
# The key comes from R3_ACCESS_KEY_ID and R3_SECRET_ACCESS_KEY when set, else from the
# credentials file ($R3_CREDENTIALS, default ~/.remoteit/credentials; the page sources it,
# here only its R3_ lines, so that the [DEFAULT] line is not run as a command).
# Where this differs from the page: the method, host and path come from URL; curl gets
# -sS --fail (the page's --write-out -v prints "-v" after the answer) and verifies the
# server's certificate against $CURL_CA_BUNDLE when set, instead of --insecure.
set -euo pipefail

URL=$1
DATA=${2:-'{"query":"{ login { email } }"}'}
if [ -z "${R3_SECRET_ACCESS_KEY:-}" ]; then
  # shellcheck disable=SC1090
  source <(grep '^R3_' "${R3_CREDENTIALS:-$HOME/.remoteit/credentials}")
fi

VERB=POST
CONTENT_TYPE="application/json"
REST=${URL#*://}
HOST=${REST%%/*}
URL_PATH=${REST#*/}

SECRET=$(echo "${R3_SECRET_ACCESS_KEY}" | base64 --decode)

LC_VERB=$(echo "${VERB}" | tr '[:upper:]' '[:lower:]')

DATE=$(LANG=en_US date -u "+%a, %d %b %Y %H:%M:%S %Z")

SIGNING_STRING="(request-target): ${LC_VERB} /${URL_PATH}
host: ${HOST}
date: ${DATE}
content-type: ${CONTENT_TYPE}"

SIGNATURE=$(echo -n "${SIGNING_STRING}" | openssl dgst -binary -sha256 -hmac "${SECRET}" | base64)

SIGNATURE_HEADER="Signature keyId=\"${R3_ACCESS_KEY_ID}\",algorithm=\"hmac-sha256\",headers=\"(request-target) host date content-type\",signature=\"${SIGNATURE}\""

TLS_OPTION=(--insecure)
if [ -n "${CURL_CA_BUNDLE:-}" ]; then
  TLS_OPTION=(--cacert "${CURL_CA_BUNDLE}")
fi

curl -sS --fail -X "${VERB}" -H "Authorization:${SIGNATURE_HEADER}" -H "Date:${DATE}" \
  -H "Content-Type:${CONTENT_TYPE}" "${URL}" -d "${DATA}" "${TLS_OPTION[@]}"
