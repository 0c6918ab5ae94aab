/**
 * GRAPH_DICTIONARY_V1: a frozen DEFLATE preset dictionary (RFC 1951 §3.2 window pre-fill) for
 * the GRAPH section: common ONNX op, attribute and PyTorch-exporter value names, then a few
 * nodes, value infos and tensor descriptors as this format serializes them (msgpack bytes
 * frozen here, so a msgpack library update cannot change them). Saves ~200 bytes on a
 * ResNet-20 graph, 4–5% of that model's container overhead. Never edit: a new dictionary gets
 * a new codec id.
 * @module
 */

const BASE64 =
  "Q29udgBSZWx1AEFkZABHZW1tAE1hdE11bABCYXRjaE5vcm1hbGl6YXRpb24ATWF4UG9vbABBdmVyYWdlUG9vbABHbG9iYWxB" +
  "dmVyYWdlUG9vbABGbGF0dGVuAFJlc2hhcGUASWRlbnRpdHkAQ29uY2F0AENsaXAATXVsAFNpZ21vaWQASGFyZFN3aXNoAFRy" +
  "YW5zcG9zZQBTb2Z0bWF4AENvbnN0YW50AFNoYXBlAEdhdGhlcgBVbnNxdWVlemUAU3F1ZWV6ZQBQYWQAUmVkdWNlTWVhbgBE" +
  "cm9wb3V0AFN1YgBEaXYAU3BsaXQAU2xpY2UAUmVzaXplAExlYWt5UmVsdQBkaWxhdGlvbnMAZ3JvdXAAa2VybmVsX3NoYXBl" +
  "AHBhZHMAc3RyaWRlcwBhbHBoYQBiZXRhAHRyYW5zQQB0cmFuc0IAYXhpcwBheGVzAGtlZXBkaW1zAGVwc2lsb24AbW9tZW50" +
  "dW0AY2VpbF9tb2RlAGF1dG9fcGFkAGlucHV0AG91dHB1dABiYXRjaF9zaXplAHdlaWdodABiaWFzAHJ1bm5pbmdfbWVhbgBy" +
  "dW5uaW5nX3ZhcgBmYy53ZWlnaHQAZmMuYmlhcwAvbGF5ZXJzL2xheWVycy4wL2MxL0NvbnYAL2xheWVycy9sYXllcnMuMC9S" +
  "ZWx1X291dHB1dF8wAC9Db252X291dHB1dF8wAC9SZWx1X291dHB1dF8wAC9BZGRfb3V0cHV0XzAAL1JlbHVfMV9vdXRwdXRf" +
  "MAAvZmVhdHVyZXMvZmVhdHVyZXMuMC9mZWF0dXJlcy4wLjAvQ29udgAvY2xhc3NpZmllci9jbGFzc2lmaWVyLjEvR2VtbQAv" +
  "c3RlbS9zdGVtLjAvQ29udgAvbGF5ZXIxL2xheWVyMS4wL2NvbnYxL0NvbnYAL2Rvd25zYW1wbGUvZG93bnNhbXBsZS4wL0Nv" +
  "bnYAL0dsb2JhbEF2ZXJhZ2VQb29sX291dHB1dF8wAC9GbGF0dGVuX291dHB1dF8wAC9mYy9HZW1tAG9ubng6OkNvbnZfAG9u" +
  "bng6OkdlbW1fAElkZW50aXR5XwBweXRvcmNoAHRvcmNoX2ppdABtYWluX2dyYXBolqRDb252oLgvbGF5ZXJzL2xheWVycy4w" +
  "L2MxL0NvbnaTvi9sYXllcnMvbGF5ZXJzLjAvUmVsdV9vdXRwdXRfMK5vbm54OjpDb252XzIwMK5vbm54OjpDb252XzIwMZHZ" +
  "IS9sYXllcnMvbGF5ZXJzLjAvYzEvQ29udl9vdXRwdXRfMJWTqWRpbGF0aW9ucweSAQGTpWdyb3VwAgGTrGtlcm5lbF9zaGFw" +
  "ZQeSAwOTpHBhZHMHlAEBAQGTp3N0cmlkZXMHkgEBlqRSZWx1oLUvbGF5ZXJzL2xheWVycy4wL1JlbHWR2SEvbGF5ZXJzL2xh" +
  "eWVycy4wL2MxL0NvbnZfb3V0cHV0XzCRvi9sYXllcnMvbGF5ZXJzLjAvUmVsdV9vdXRwdXRfMJCWo0FkZKC0L2xheWVycy9s" +
  "YXllcnMuMC9BZGSS2SEvbGF5ZXJzL2xheWVycy4wL2MyL0NvbnZfb3V0cHV0XzC6L3N0ZW0vc3RlbS4yL1JlbHVfb3V0cHV0" +
  "XzCRvS9sYXllcnMvbGF5ZXJzLjAvQWRkX291dHB1dF8wkJakR2VtbaCoL2ZjL0dlbW2TsS9GbGF0dGVuX291dHB1dF8wqWZj" +
  "LndlaWdodKdmYy5iaWFzkaZvdXRwdXSTk6VhbHBoYQHECAAAAAAAAPA/k6RiZXRhAcQIAAAAAAAA8D+TpnRyYW5zQgIBkZOl" +
  "aW5wdXQBlKpiYXRjaF9zaXplARwckpaub25ueDo6Q29udl8yMDOUEBADAwDECAAAAAAAAPA/ZMzIkq5vbm54OjpDb252XzIw" +
  "NJEB";
/** The dictionary bytes (1443 bytes). */
export const GRAPH_DICTIONARY_V1: Uint8Array = Uint8Array.from(atob(BASE64), (c) => c.charCodeAt(0));
