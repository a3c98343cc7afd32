#!/usr/bin/env bash
# Installs the Debian packages the speech-data pipeline uses (see DATA sources in README):
# TTS voices (espeak-ng, flite, festival + festvox voices), sox, and real recorded speech
# (Asterisk studio prompts, Fish Fillets acted dialogue, Tux Paint stamp descriptions: docs/data.md).
# Needs root (or sudo) and Debian's registry.
set -euo pipefail
PACKAGES=(
  sox libsox-fmt-all
  espeak-ng flite
  festival festlex-cmu festlex-poslex festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
  asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav
  fillets-ng-data fillets-ng-data-cs fillets-ng-data-nl
  tuxpaint-stamps-default asterisk-prompt-es-co asterisk-prompt-fr-armelle
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "Debian packages: all ${#PACKAGES[@]} present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Debian packages installed"
