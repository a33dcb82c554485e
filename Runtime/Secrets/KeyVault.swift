import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// An OAuth access token for `https://vault.azure.net`.
public struct AccessToken: Sendable {
    public let value: String
    public let expiresOn: Date
}

public protocol TokenCredential: Sendable {
    var name: String { get }
    func token() async throws(SecretsError) -> AccessToken
}

/// App Service / Functions managed identity: `GET {IDENTITY_ENDPOINT}?resource=…&api-version=2019-08-01`
/// with `X-IDENTITY-HEADER`; `expires_on` is unix seconds as a string.
public struct ManagedIdentityCredential: TokenCredential {
    let endpoint: URL
    let header: String
    let clientID: String?
    let http: OutboundHTTP
    public var name: String { "managed identity" }

    public init(endpoint: URL, header: String, clientID: String? = nil, http: OutboundHTTP = OutboundHTTP()) {
        self.endpoint = endpoint
        self.header = header
        self.clientID = clientID
        self.http = http
    }

    public func token() async throws(SecretsError) -> AccessToken {
        guard var components = URLComponents(url: endpoint, resolvingAgainstBaseURL: false) else {
            throw SecretsError("IDENTITY_ENDPOINT is not a URL")
        }
        var items = components.queryItems ?? []
        items.append(URLQueryItem(name: "resource", value: KeyVaultClient.resource))
        items.append(URLQueryItem(name: "api-version", value: "2019-08-01"))
        if let clientID { items.append(URLQueryItem(name: "client_id", value: clientID)) }
        components.queryItems = items
        guard let url = components.url?.absoluteString else { throw SecretsError("IDENTITY_ENDPOINT is not a URL") }
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "X-IDENTITY-HEADER", value: header)
        let reply: OutboundHTTP.Reply
        do {
            reply = try await http.send(request, timeout: .seconds(5))
        } catch {
            throw SecretsError("managed identity endpoint \(error.description)")
        }
        guard reply.status == 200 else { throw SecretsError("managed identity endpoint answered \(reply.status)") }
        return try AccessToken.parse(reply.body, source: "managed identity endpoint")
    }
}

/// Client credentials (service principal): `POST {authority}/{tenant}/oauth2/v2.0/token`.
public struct ClientSecretCredential: TokenCredential {
    let authority: URL
    let tenantID: String
    let clientID: String
    let clientSecret: String
    let http: OutboundHTTP
    public var name: String { "client credentials" }

    public init(authority: URL, tenantID: String, clientID: String, clientSecret: String, http: OutboundHTTP = OutboundHTTP()) {
        self.authority = authority
        self.tenantID = tenantID
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.http = http
    }

    public func token() async throws(SecretsError) -> AccessToken {
        let url = authority.appendingPathComponent(tenantID).appendingPathComponent("oauth2/v2.0/token").absoluteString
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        let form = [
            ("grant_type", "client_credentials"), ("client_id", clientID), ("client_secret", clientSecret),
            ("scope", KeyVaultClient.resource + "/.default"),
        ].map { "\($0)=\(Self.formEncode($1))" }.joined(separator: "&")
        request.body = .bytes(ByteBuffer(string: form))
        let reply: OutboundHTTP.Reply
        do {
            reply = try await http.send(request, timeout: .seconds(5))
        } catch {
            throw SecretsError("token endpoint \(error.description)")
        }
        guard reply.status == 200 else { throw SecretsError("token endpoint answered \(reply.status)") }
        return try AccessToken.parse(reply.body, source: "token endpoint")
    }

    static func formEncode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

extension AccessToken {
    /// `access_token` with `expires_on` (unix seconds, string or number) or `expires_in` (seconds).
    static func parse(_ body: ByteBuffer, source: String) throws(SecretsError) -> AccessToken {
        guard let document = try? JSONReader.parse(body.readableBytesView),
            let token = document["access_token"]?.stringValue, !token.isEmpty
        else { throw SecretsError("\(source) answered without an access_token") }
        func seconds(_ value: JSONValue?) -> Double? {
            switch value {
            case .number(let number)?: number
            case .string(let text)?: Double(text)
            default: nil
            }
        }
        // Bounded: a token is used for at most a day whatever the endpoint says; NaN or infinity is no answer.
        let expiresOn: Date
        let now = Date().timeIntervalSince1970
        if let on = seconds(document["expires_on"]) {
            guard let bounded = Bounded.clamp(on, to: 0...(now + 86_400)) else { throw SecretsError("\(source) answered an invalid expires_on") }
            expiresOn = Date(timeIntervalSince1970: bounded)
        } else if let within = seconds(document["expires_in"]) {
            guard let bounded = Bounded.clamp(within, to: 0...86_400) else { throw SecretsError("\(source) answered an invalid expires_in") }
            expiresOn = Date(timeIntervalSince1970: now + bounded)
        } else {
            throw SecretsError("\(source) answered without expires_on")
        }
        return AccessToken(value: token, expiresOn: expiresOn)
    }
}

/// Key Vault's REST API (`GET {vault}/secrets/{name}[/{version}]?api-version=7.4`) with a token
/// cached until `refreshMargin` before it expires.
public final class KeyVaultClient: Sendable {
    public static let resource = "https://vault.azure.net"
    static let apiVersion = "7.4"

    private let credential: any TokenCredential
    private let http: OutboundHTTP
    private let refreshMargin: TimeInterval
    private let maxAttempts: Int
    private let cached = Mutex<AccessToken?>(nil)

    public init(credential: any TokenCredential, http: OutboundHTTP = OutboundHTTP(), refreshMargin: TimeInterval = 300, maxAttempts: Int = 4) {
        self.credential = credential
        self.http = http
        self.refreshMargin = refreshMargin
        self.maxAttempts = maxAttempts
    }

    private func token(forceRefresh: Bool) async throws(SecretsError) -> String {
        if !forceRefresh, let token = cached.withLock({ $0 }), token.expiresOn.timeIntervalSinceNow > refreshMargin {
            return token.value
        }
        let fresh = try await credential.token()
        cached.withLock { $0 = fresh }
        return fresh.value
    }

    /// The secret's value; nil when the vault has no such secret (404 `SecretNotFound`).
    public func secret(vault: URL, name: String, version: String? = nil) async throws(SecretsError) -> String? {
        guard OutboundHTTP.isAllowedTarget(vault) else {
            throw SecretsError("secret \(name): vault URL must be https")
        }
        var url = vault.appendingPathComponent("secrets").appendingPathComponent(name)
        if let version, !version.isEmpty { url = url.appendingPathComponent(version) }
        let target = url.absoluteString + "?api-version=\(Self.apiVersion)"
        var refreshedAfterDenial = false
        var attempt = 0
        while true {
            attempt += 1
            let bearer = try await token(forceRefresh: false)
            var request = HTTPClientRequest(url: target)
            request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
            let reply: OutboundHTTP.Reply
            do {
                reply = try await http.send(request, timeout: .seconds(10))
            } catch {
                throw SecretsError("secret \(name): Key Vault \(error.description)")
            }
            switch reply.status {
            case 200:
                guard let document = try? JSONReader.parse(reply.body.readableBytesView),
                    let value = document["value"]?.stringValue
                else { throw SecretsError("secret \(name): Key Vault answered without a value") }
                return value
            case 401 where !refreshedAfterDenial:
                // The cached token may have been revoked or rotated: fetch a new one once.
                refreshedAfterDenial = true
                _ = try await token(forceRefresh: true)
            case 401:
                throw SecretsError("secret \(name): Key Vault refused the token (401 Unauthorized); check the identity")
            case 403:
                throw SecretsError("secret \(name): Key Vault denied access (403 Forbidden); grant the identity secrets/get")
            case 404:
                // 404 SecretNotFound: the vault has no such secret, which the caller may tolerate;
                // a missing pinned version is a configuration error.
                guard let version else { return nil }
                throw SecretsError("secret \(name): version \(version) not found in Key Vault (404 \(Self.errorCode(reply.body) ?? "NotFound"))")
            case 429 where attempt < maxAttempts, 503 where attempt < maxAttempts:
                let retryAfter = Bounded.retryAfterSeconds(reply.headers.first(name: "Retry-After"), limit: 10).map(Double.init) ?? Double(attempt)
                try? await Task.sleep(for: Bounded.duration(seconds: retryAfter, in: 0.1...10))
            case 429, 503:
                throw SecretsError("secret \(name): Key Vault is throttling requests (\(reply.status)) after \(attempt) attempts")
            default:
                throw SecretsError("secret \(name): Key Vault answered \(reply.status)")
            }
        }
    }

    private static func errorCode(_ body: ByteBuffer) -> String? {
        (try? JSONReader.parse(body.readableBytesView))?["error"]?["code"]?.stringValue
    }

    /// Picks the credential the environment offers: managed identity (`IDENTITY_ENDPOINT`,
    /// `IDENTITY_HEADER`, optional `AZURE_CLIENT_ID` for a user-assigned one), else client
    /// credentials (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST`).
    public static func credential(settings: Settings) throws(SecretsError) -> any TokenCredential {
        if let endpoint = settings.nonEmpty(HostSettings.identityEndpoint.name), let header = settings.nonEmpty(HostSettings.identityHeader.name) {
            guard let url = URL(string: endpoint), OutboundHTTP.isAllowedTarget(url) else {
                throw SecretsError("IDENTITY_ENDPOINT must be an https or loopback URL")
            }
            return ManagedIdentityCredential(endpoint: url, header: header, clientID: settings.nonEmpty(HostSettings.azureClientID.name))
        }
        if let tenant = settings.nonEmpty(HostSettings.azureTenantID.name), let client = settings.nonEmpty(HostSettings.azureClientID.name),
            let secret = settings.nonEmpty(HostSettings.azureClientSecret.name)
        {
            let authorityText = settings.nonEmpty(HostSettings.azureAuthorityHost.name) ?? "https://login.microsoftonline.com"
            guard let authority = URL(string: authorityText), OutboundHTTP.isAllowedTarget(authority) else {
                throw SecretsError("AZURE_AUTHORITY_HOST must be an https or loopback URL")
            }
            return ClientSecretCredential(authority: authority, tenantID: tenant, clientID: client, clientSecret: secret)
        }
        throw SecretsError(
            "Key Vault needs a managed identity (IDENTITY_ENDPOINT, IDENTITY_HEADER) or client credentials (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)")
    }
}

/// Secrets from one vault. Key Vault names allow letters, digits and dashes, so `HOST_RBAC_API_KEY`
/// is read as `HOST-RBAC-API-KEY`.
public struct KeyVaultSecretsProvider: SecretsProvider {
    let vault: URL
    let client: KeyVaultClient
    public var name: String { "keyvault:\(vault.absoluteString)" }

    public init(vault: URL, client: KeyVaultClient) {
        self.vault = vault
        self.client = client
    }

    public func secret(named name: String) async throws(SecretsError) -> String? {
        try await client.secret(vault: vault, name: Self.vaultName(for: name))
    }

    static func vaultName(for setting: String) -> String {
        String(setting.map { $0.isLetter || $0.isNumber ? $0 : "-" })
    }
}

/// `@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/name[/version])` or
/// `@Microsoft.KeyVault(VaultName=v;SecretName=name[;SecretVersion=version])`, as App Service parses them.
public struct KeyVaultReference: Sendable, Equatable {
    public let vault: URL
    public let secretName: String
    public let version: String?

    public static func isReference(_ value: String) -> Bool {
        value.hasPrefix("@Microsoft.KeyVault(")
    }

    public init(parsing value: String) throws(SecretsError) {
        guard Self.isReference(value), value.hasSuffix(")") else {
            throw SecretsError("not a Key Vault reference")
        }
        let inner = value.dropFirst("@Microsoft.KeyVault(".count).dropLast()
        var parts: [String: String] = [:]
        for pair in inner.split(separator: ";") {
            guard let equals = pair.firstIndex(of: "=") else { throw SecretsError("Key Vault reference has a part without '='") }
            parts[pair[..<equals].trimmingCharacters(in: .whitespaces).lowercased()] =
                pair[pair.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        if let uri = parts["secreturi"] {
            guard let url = URL(string: uri), let host = url.host, url.scheme == "https" || OutboundHTTP.isAllowedTarget(url) else {
                throw SecretsError("Key Vault reference SecretUri is not an https URL")
            }
            let segments = url.path.split(separator: "/").map(String.init)
            guard segments.count >= 2, segments.count <= 3, segments[0] == "secrets" else {
                throw SecretsError("Key Vault reference SecretUri must look like https://NAME.vault.azure.net/secrets/SECRET[/VERSION]")
            }
            var base = URLComponents()
            base.scheme = url.scheme
            base.host = host
            base.port = url.port
            guard let vault = base.url else { throw SecretsError("Key Vault reference SecretUri is not a URL") }
            self.vault = vault
            secretName = segments[1]
            version = segments.count == 3 ? segments[2] : nil
        } else if let vaultName = parts["vaultname"], let secretName = parts["secretname"] {
            guard vaultName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }),
                let vault = URL(string: "https://\(vaultName).vault.azure.net")
            else { throw SecretsError("Key Vault reference VaultName is not a vault name") }
            self.vault = vault
            self.secretName = secretName
            version = parts["secretversion"]
        } else {
            throw SecretsError("Key Vault reference needs SecretUri, or VaultName and SecretName")
        }
    }
}
