#!/usr/bin/env bash
# Installs the real peers the interoperability tests talk to (Debian packages), when they are missing
# and we are root. Without root it only reports what is missing: those tests then skip with a reason
# (under CI=true a missing peer fails the test instead).
set -u
missing=()
command -v smbtorture >/dev/null 2>&1 || missing+=(samba-testsuite)
/usr/bin/python3 -c 'import samba.ndr' >/dev/null 2>&1 || missing+=(python3-samba)
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
command -v krb5kdc >/dev/null 2>&1 || [ -x /usr/sbin/krb5kdc ] || missing+=(krb5-kdc)
command -v kadmin.local >/dev/null 2>&1 || [ -x /usr/sbin/kadmin.local ] || missing+=(krb5-admin-server)
command -v kinit >/dev/null 2>&1 || missing+=(krb5-user)
[ -x /usr/libexec/samba/samba-dcerpcd ] || missing+=(samba)
# rpcclient drives Samba's named pipes for the SMB2 monitor tests (tests/interop/test_smb2_monitor.py)
command -v rpcclient >/dev/null 2>&1 || missing+=(smbclient)
# python-gssapi (Kerberos for pyspnego) builds against MIT's headers
command -v krb5-config.mit >/dev/null 2>&1 || [ -e /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
# dcerpc firewall's rules are applied for real in a network namespace (tests/interop/test_firewall.py)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v iptables-restore >/dev/null 2>&1 || [ -x /usr/sbin/iptables-restore ] || missing+=(iptables)
# promtool checks the metrics exposition (tests/audit/test_metrics.py)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# nmap's RPC probes are among the attacks of the evaluation corpus (tests/evaluation/)
command -v nmap >/dev/null 2>&1 || missing+=(nmap)
# benchmarks/monitor.py turns the namespace loopback's segmentation offloads off, so its capture
# holds MSS-sized segments as a real network's does
command -v ethtool >/dev/null 2>&1 || [ -x /usr/sbin/ethtool ] || missing+=(ethtool)
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "peers missing (not root or no apt-get, tests needing them will skip): ${missing[*]}" >&2
  exit 0
fi
echo "installing peers: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
