import Foundation

/// The deployment zip of a package folder (Flex Consumption deploys one zip, read-only): entries
/// stored (no compression, so it builds in milliseconds and is byte-for-byte the folder), with the
/// Unix mode of every file in the central directory's external attributes, so `fnhost` stays
/// executable after the platform unpacks it. Deterministic: sorted names, a fixed timestamp.
public enum PackageZip {
    public struct ZipError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func write(directory: String, to zipPath: String) throws(ZipError) {
        let root = URL(fileURLWithPath: directory)
        let fileManager = FileManager.default
        guard let enumerator = fileManager.enumerator(atPath: root.path) else {
            throw ZipError(description: "cannot read \(root.path)")
        }
        var names: [String] = []
        for case let name as String in enumerator {
            var isDirectory: ObjCBool = false
            if fileManager.fileExists(atPath: root.appendingPathComponent(name).path, isDirectory: &isDirectory), !isDirectory.boolValue {
                names.append(name)
            }
        }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var out: [UInt8] = []
        var central: [UInt8] = []
        for name in names {
            let path = root.appendingPathComponent(name).path
            guard let data = fileManager.contents(atPath: path) else { throw ZipError(description: "cannot read \(path)") }
            guard data.count < Int(UInt32.max), out.count < Int(UInt32.max) else { throw ZipError(description: "the package is over 4 GiB") }
            let mode = ((try? fileManager.attributesOfItem(atPath: path)[.posixPermissions]) as? Int) ?? 0o644
            let bytes = [UInt8](data)
            let crc = crc32(bytes)
            let nameBytes = Array(name.utf8)
            let offset = UInt32(out.count)
            // Local file header.
            out.le32(0x0403_4B50); out.le16(20); out.le16(0x0800); out.le16(0)  // version, UTF-8 names, stored
            out.le16(0); out.le16(0x21)  // 1980-01-01 00:00
            out.le32(crc); out.le32(UInt32(bytes.count)); out.le32(UInt32(bytes.count))
            out.le16(UInt16(nameBytes.count)); out.le16(0)
            out += nameBytes
            out += bytes
            // Central directory entry: made by Unix (3), the mode as a regular file.
            central.le32(0x0201_4B50); central.le16(3 << 8 | 20); central.le16(20); central.le16(0x0800); central.le16(0)
            central.le16(0); central.le16(0x21)
            central.le32(crc); central.le32(UInt32(bytes.count)); central.le32(UInt32(bytes.count))
            central.le16(UInt16(nameBytes.count)); central.le16(0); central.le16(0); central.le16(0); central.le16(0)
            central.le32(UInt32(0o100000 | (mode & 0o7777)) << 16)
            central.le32(offset)
            central += nameBytes
        }
        let centralOffset = UInt32(out.count)
        out += central
        out.le32(0x0605_4B50); out.le16(0); out.le16(0)
        out.le16(UInt16(names.count)); out.le16(UInt16(names.count))
        out.le32(UInt32(central.count)); out.le32(centralOffset); out.le16(0)
        guard fileManager.createFile(atPath: zipPath, contents: Data(out)) else { throw ZipError(description: "cannot write \(zipPath)") }
    }

    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

extension [UInt8] {
    fileprivate mutating func le16(_ value: UInt16) { append(UInt8(value & 0xFF)); append(UInt8(value >> 8)) }
    fileprivate mutating func le32(_ value: UInt32) { for shift in stride(from: 0, to: 32, by: 8) { append(UInt8((value >> UInt32(shift)) & 0xFF)) } }
}
