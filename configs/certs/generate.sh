#!/usr/bin/env bash
# Generates the DEVELOPMENT-ONLY TLS material that configs/gateway.yaml uses, so that
# `floodgate --config configs/gateway.yaml --check` passes on a fresh clone.
#
#   ca.pem                                a local "Floodgate Dev CA" (trust it in curl: --cacert);
#                                         its key is deleted once the leaves are signed
#   code.example.gov.crt / .key           leaf for code.example.gov
#   status.example.gov.crt / .key         leaf for *.status.example.gov (and status.example.gov)
#
# The private keys are committed on purpose: these certificates are for local testing
# only and must never protect anything real. Re-run to rotate: ./generate.sh
set -euo pipefail
cd "$(dirname "$0")"

DAYS=3650

# ECDSA P-256 keys in PKCS#8 PEM ("BEGIN PRIVATE KEY").
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

newkey ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -out ca.pem \
  -subj "/O=Floodgate development/CN=Floodgate Dev CA (local testing only)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

# leaf NAME SAN-LIST
leaf() {
  local name=$1 sans=$2 ext
  ext=$(mktemp)
  trap 'rm -f "$ext"' RETURN
  cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans
EXT
  newkey "$name.key"
  openssl req -new -key "$name.key" -subj "/O=Floodgate development/CN=$name" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr"
}

leaf code.example.gov "DNS:code.example.gov"
leaf status.example.gov "DNS:*.status.example.gov,DNS:status.example.gov"
# The CA key is not kept: nothing should be able to issue more certificates from this CA.
rm -f ca.srl ca.key

echo "wrote development certificates to $(pwd)"
