"""Every text the citizen portal and the development sign-in show, in Swedish and English.

``MESSAGES`` holds the interface texts, ``ERRORS`` a plain sentence for each
``ErrorInfo`` reason the broker may answer with, ``POLICY_REASONS`` one for each
reason a policy decision may give (shown in the timeline). Swedish is the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LANGUAGES = ("sv", "en")
DEFAULT_LANGUAGE = "sv"

# key: (Swedish, English)
MESSAGES: Mapping[str, tuple[str, str]] = {
    # -- frame
    "site_name": ("Tillit", "Tillit"),
    "tagline": ("Dina uppgifter hos myndigheterna", "Your data at public agencies"),
    "skip": ("Hoppa till innehållet", "Skip to content"),
    "nav_main": ("Huvudmeny", "Main menu"),
    "nav_language": ("Språk", "Language"),
    "nav_home": ("Start", "Home"),
    "nav_consents": ("Mina samtycken", "My consents"),
    "nav_give": ("Ge samtycke", "Give consent"),
    "nav_timeline": ("Vem har använt mina uppgifter", "Who used my data"),
    "nav_people": ("Vem jag företräder", "Acting for"),
    "sign_in": ("Logga in", "Sign in"),
    "sign_out": ("Logga ut", "Sign out"),
    "signed_in_as": ("Inloggad som {who}", "Signed in as {who}"),
    "acting_for_child": (
        "Du företräder ditt barn {who}, {age} år. Det du gör här gäller barnet.",
        "You are acting for your child {who}, age {age}. What you do here applies to the child.",
    ),
    "acting_back": ("Företräd dig själv igen", "Act for yourself again"),
    "footer": (
        "Tillit är en demonstration med påhittade myndigheter och syntetiska personer.",
        "Tillit is a demonstration with invented agencies and synthetic people.",
    ),
    "footer_privacy": (
        "Varje hämtning av dina uppgifter loggas och syns för dig.",
        "Every fetch of your data is logged and visible to you.",
    ),
    "dev_idp_note": (
        "Inloggningen går till en utvecklingsinloggning, inte en riktig e-legitimation.",
        "Sign-in goes to a development sign-in, not a real e-ID.",
    ),
    # -- home
    "home_title": ("Dina uppgifter, dina beslut", "Your data, your decisions"),
    "home_intro": (
        "Myndigheter kan återanvända uppgifter som du redan har lämnat till en annan "
        "myndighet, så att du slipper lämna dem igen. Här bestämmer du när det får ske.",
        "Agencies can reuse data you have already given to another agency, so you need not "
        "give it again. Here you decide when that may happen.",
    ),
    "home_can": ("Här kan du", "Here you can"),
    "home_point_consents": (
        "se och återkalla dina samtycken med ett klick,",
        "see and withdraw your consents with one click,",
    ),
    "home_point_give": (
        "läsa vad en e-tjänst vill hämta och ge samtycke,",
        "read what an e-service wants to fetch, and give consent,",
    ),
    "home_point_receipt": (
        "ladda ned ett signerat kvitto på varje samtycke,",
        "download a signed receipt for every consent,",
    ),
    "home_point_timeline": (
        "se varje gång någon har hämtat dina uppgifter, och varför,",
        "see every time someone fetched your data, and why,",
    ),
    "home_point_children": (
        "sköta samtycken för dina barn under 18 år.",
        "manage consents for your children under 18.",
    ),
    "home_welcome": ("Välkommen", "Welcome"),
    # -- consents
    "consents_title": ("Mina samtycken", "My consents"),
    "consents_title_child": ("Samtycken för {who}", "Consents for {who}"),
    "consents_intro": (
        "Samtycken, uttryckliga begäranden och medgivanden som låter en e-tjänst hämta "
        "uppgifter om dig från en annan myndighet.",
        "Consents, explicit requests and waivers that let an e-service fetch data about you "
        "from another agency.",
    ),
    "state_active": ("Gällande", "Active"),
    "state_withdrawn": ("Återkallade", "Withdrawn"),
    "state_expired": ("Utgångna", "Expired"),
    "caption_active": ("Gällande samtycken", "Active consents"),
    "caption_withdrawn": ("Återkallade samtycken", "Withdrawn consents"),
    "caption_expired": ("Utgångna samtycken", "Expired consents"),
    "none_active": ("Inga gällande samtycken.", "No active consents."),
    "none_withdrawn": ("Inga återkallade samtycken.", "No withdrawn consents."),
    "none_expired": ("Inga utgångna samtycken.", "No expired consents."),
    "col_what": ("Vad", "What"),
    "col_to": ("Till", "To"),
    "col_from": ("Från", "From"),
    "col_data": ("Uppgifter", "Data"),
    "col_valid": ("Giltighet", "Validity"),
    "col_withdrawn": ("Återkallat", "Withdrawn"),
    "col_given_by": ("Givet av", "Given by"),
    "col_actions": ("Åtgärder", "Actions"),
    "to_word": ("till", "to"),
    "withdraw": ("Återkalla", "Withdraw"),
    "receipt": ("Kvitto", "Receipt"),
    "give_new": ("Ge ett nytt samtycke", "Give a new consent"),
    "more": ("Visa fler", "Show more"),
    "given_by_subject": ("Du själv", "You"),
    "given_by_guardian": ("Vårdnadshavare", "A guardian"),
    "flash_given": (
        "Klart: {kind} är registrerat och gäller till {until}.",
        "Done: the {kind} is recorded and lasts until {until}.",
    ),
    "flash_withdrawn": (
        "Återkallat. Inga fler hämtningar får göras med stöd av det.",
        "Withdrawn. No further fetches may rely on it.",
    ),
    "flash_signed_out": ("Du är utloggad.", "You are signed out."),
    "kind_explicit_request": ("Uttrycklig begäran", "Explicit request"),
    "kind_waiver_of_confidentiality": (
        "Medgivande att häva sekretess",
        "Waiver of confidentiality",
    ),
    "kind_consent": ("Samtycke", "Consent"),
    "kind_lower_explicit_request": ("den uttryckliga begäran", "explicit request"),
    "kind_lower_waiver_of_confidentiality": ("medgivandet", "waiver of confidentiality"),
    "kind_lower_consent": ("samtycket", "consent"),
    # -- give
    "purposes_title": ("Ge samtycke", "Give consent"),
    "purposes_intro": (
        "Välj vad en e-tjänst får hämta åt dig. Läs informationen innan du bestämmer dig. "
        "Du kan alltid återkalla, och att säga nej påverkar inte ditt ärende.",
        "Choose what an e-service may fetch for you. Read the information before you decide. "
        "You can always withdraw, and saying no does not affect your case.",
    ),
    "caption_offers": ("Vad som kan hämtas för: {purpose}", "What can be fetched for: {purpose}"),
    "col_kind": ("Slag", "Kind"),
    "col_decide": ("Beslut", "Decision"),
    "read_notice": ("Läs och bestäm", "Read and decide"),
    "already_active": ("Gäller redan", "Already active"),
    # -- notice
    "notice_version": (
        "Informationstext version {version}, publicerad {published}.",
        "Notice version {version}, published {published}.",
    ),
    "notice_details": ("I korthet", "In short"),
    "detail_kind": ("Slag", "Kind"),
    "detail_to": ("Mottagare", "Recipient"),
    "detail_from": ("Hämtas från", "Fetched from"),
    "detail_data": ("Uppgifter", "Data"),
    "detail_basis": ("Rättslig grund", "Lawful basis"),
    "decide_heading": ("Ditt beslut", "Your decision"),
    "validity_legend": ("Hur länge ska det gälla?", "How long should it last?"),
    "validity_3": ("3 månader", "3 months"),
    "validity_12": ("1 år", "1 year"),
    "validity_36": ("3 år", "3 years"),
    "confirm_label": ("Jag har läst informationen ovan.", "I have read the information above."),
    "grant_explicit_request": ("Begär att uppgifterna hämtas", "Ask for the data to be fetched"),
    "grant_waiver_of_confidentiality": ("Häv sekretessen för detta", "Waive confidentiality"),
    "grant_consent": ("Ge samtycke", "Give consent"),
    "cancel": ("Avbryt", "Cancel"),
    "confirm_required": (
        "Bekräfta att du har läst informationen.",
        "Confirm that you have read the information.",
    ),
    # -- receipt
    "receipt_title": ("Kvitto", "Receipt"),
    "receipt_intro": (
        "Kvittot är ett signerat bevis på vad du gav, till vem och när.",
        "The receipt is signed proof of what you gave, to whom and when.",
    ),
    "receipt_verified": (
        "Signaturen är kontrollerad mot Tillits publika nyckel {kid}.",
        "The signature was checked against Tillit's public key {kid}.",
    ),
    "receipt_given_heading": ("Givet", "Given"),
    "receipt_withdrawn_heading": ("Återkallat", "Withdrawn"),
    "receipt_download_given": ("Ladda ned kvittot (JWS)", "Download the receipt (JWS)"),
    "receipt_download_withdrawn": (
        "Ladda ned kvittot på återkallelsen (JWS)",
        "Download the withdrawal receipt (JWS)",
    ),
    "receipt_offline": (
        "Du kan kontrollera kvittot själv, utan uppkoppling, med Tillits publika nycklar "
        "(kommandot tillit consent verify-receipt).",
        "You can check the receipt yourself, offline, with Tillit's public keys "
        "(the command tillit consent verify-receipt).",
    ),
    "r_consent_id": ("Id", "Id"),
    "r_event_time": ("Tidpunkt", "Time"),
    "r_kind": ("Slag", "Kind"),
    "r_purpose": ("Ändamål", "Purpose"),
    "r_basis": ("Rättslig grund", "Lawful basis"),
    "r_recipient": ("Mottagare", "Recipient"),
    "r_source": ("Källa", "Source"),
    "r_data": ("Uppgifter", "Data"),
    "r_valid": ("Giltighet", "Validity"),
    "r_notice": ("Informationstext", "Notice"),
    "r_notice_value": ("version {version} på {language}", "version {version} in {language}"),
    "r_given_by": ("Givet av", "Given by"),
    "r_withdrawal": ("Så återkallar du", "How to withdraw"),
    "r_issuer": ("Utfärdare", "Issuer"),
    "language_sv": ("svenska", "Swedish"),
    "language_en": ("engelska", "English"),
    "back_to_consents": ("Tillbaka till Mina samtycken", "Back to My consents"),
    # -- timeline
    "timeline_title": ("Vem har använt mina uppgifter", "Who has used my data"),
    "timeline_title_child": (
        "Vem har använt uppgifter om {who}",
        "Who has used data about {who}",
    ),
    "timeline_intro": (
        "Varje gång en myndighet har bett om dina uppgifter genom Tillit syns här, även när "
        "det nekades. Senaste först.",
        "Every time an agency asked for your data through Tillit is shown here, even when it "
        "was refused. Newest first.",
    ),
    "caption_timeline": ("Hämtningar av uppgifter", "Fetches of data"),
    "col_time": ("Tid", "Time"),
    "col_who": ("Vem", "Who"),
    "col_why": ("Varför", "Why"),
    "col_which": ("Vilka uppgifter", "Which data"),
    "col_outcome": ("Utfall", "Outcome"),
    "col_explanation": ("Förklaring", "Explanation"),
    "outcome_allow": ("Lämnades ut", "Shared"),
    "outcome_deny": ("Nekades", "Refused"),
    "allowed_because": ("Tillåtet med stöd av {basis}.", "Allowed under {basis}."),
    "case_reference": ("Ärende {case}", "Case {case}"),
    "no_events": (
        "Inga uppgifter har hämtats genom Tillit.",
        "No data has been fetched through Tillit.",
    ),
    # -- people
    "people_title": ("Vem du företräder", "Whom you act for"),
    "people_intro": (
        "Som vårdnadshavare kan du sköta samtycken och se hämtningar för dina barn under 18 år.",
        "As a guardian you can manage consents and see fetches for your children under 18.",
    ),
    "people_legend": ("Välj person", "Choose a person"),
    "relation_self": ("Du själv, {who}", "Yourself, {who}"),
    "relation_guardian": ("Ditt barn {who}, {age} år", "Your child {who}, age {age}"),
    "switch": ("Byt", "Switch"),
    "no_children": (
        "Det finns inga barn under 18 år som du är vårdnadshavare för.",
        "There are no children under 18 in your care.",
    ),
    # -- errors
    "error_title": ("Något gick fel", "Something went wrong"),
    "error_title_404": ("Sidan finns inte", "Page not found"),
    "error_title_403": ("Det gick inte", "Not allowed"),
    "error_title_401": ("Logga in", "Sign in"),
    "error_not_found": (
        "Sidan du letar efter finns inte. Kontrollera adressen.",
        "The page you are looking for does not exist. Check the address.",
    ),
    "error_csrf": (
        "Formuläret kunde inte tas emot: det var för gammalt eller kom inte från den här "
        "sidan. Ladda om sidan och försök igen.",
        "The form could not be accepted: it was too old or did not come from this page. "
        "Reload the page and try again.",
    ),
    "error_sign_in_required": (
        "Du behöver logga in för att se den här sidan.",
        "You need to sign in to see this page.",
    ),
    "error_sign_in_failed": (
        "Inloggningen kunde inte slutföras. Försök logga in igen.",
        "The sign-in could not be completed. Try signing in again.",
    ),
    "error_sign_in_cancelled": ("Inloggningen avbröts.", "The sign-in was cancelled."),
    "error_bad_request": (
        "Sidan fick en ofullständig eller felaktig begäran.",
        "The page received an incomplete or malformed request.",
    ),
    "error_receipt_invalid": (
        "Kvittot kunde inte kontrolleras och visas därför inte.",
        "The receipt could not be verified, so it is not shown.",
    ),
    "error_internal": (
        "Ett oväntat fel uppstod. Ingenting har ändrats. Försök igen om en stund.",
        "An unexpected error occurred. Nothing was changed. Try again in a while.",
    ),
    "error_code": ("Felkod: {code}", "Error code: {code}"),
    "error_home": ("Till startsidan", "Go to the start page"),
    # -- development identity provider
    "idp_title": ("Utvecklingsinloggning", "Development sign-in"),
    "idp_warning": (
        "Endast för utveckling, inte för produktion. Här finns ingen riktig e-legitimation: "
        "du väljer själv vem du är bland syntetiska personer.",
        "Development sign-in, not for production. There is no real e-ID here: you choose "
        "whom to be among synthetic people.",
    ),
    "idp_client": ("{client} vill veta vem du är.", "{client} wants to know who you are."),
    "idp_personas": ("Logga in som en syntetisk person", "Sign in as a synthetic person"),
    "idp_other": (
        "Eller skriv ett syntetiskt personnummer",
        "Or type a synthetic personal identity number",
    ),
    "idp_pnr_label": ("Personnummer", "Personal identity number"),
    "idp_pnr_hint": (
        "ÅÅÅÅMMDD-NNNN. Bara syntetiska nummer (löpnummer 980–999) godtas.",
        "YYYYMMDD-NNNN. Only synthetic numbers (serial 980–999) are accepted.",
    ),
    "idp_continue": ("Logga in", "Sign in"),
    "idp_cancel": ("Avbryt och gå tillbaka", "Cancel and go back"),
    "idp_age": ("{age} år", "age {age}"),
    "persona_guardian": ("Vuxen med barn under 18", "Adult with children under 18"),
    "persona_child": ("Barn under 18", "Child under 18"),
    "persona_protected": (
        "Person med skyddade personuppgifter",
        "Person with protected personal data",
    ),
    "persona_adult": ("Vuxen utan barn", "Adult without children"),
    "persona_parent_on_leave": ("Förälder med föräldrapenning", "Parent on parental benefit"),
    "persona_sick": ("Sjukskriven person", "Person on sick leave"),
    "idp_error_title": ("Inloggningen kan inte fortsätta", "The sign-in cannot continue"),
    "idp_error_request": (
        "Inloggningsbegäran är ogiltig: {detail}.",
        "The sign-in request is not valid: {detail}.",
    ),
    "idp_error_expired": (
        "Inloggningen tog för lång tid. Börja om från tjänsten du kom ifrån.",
        "The sign-in took too long. Start again from the service you came from.",
    ),
    "idp_error_pnr": (
        "Det är inte ett giltigt personnummer.",
        "That is not a valid personal identity number.",
    ),
    "idp_error_not_synthetic": (
        "Utvecklingsinloggningen godtar bara syntetiska personnummer (löpnummer 980–999).",
        "The development sign-in accepts only synthetic numbers (serial 980–999).",
    ),
}

# ErrorInfo reasons from the broker, as a plain sentence for the citizen.
ERRORS: Mapping[str, tuple[str, str]] = {
    "ID_TOKEN_EXPIRED": (
        "Din inloggning har gått ut. Logga in igen.",
        "Your sign-in has expired. Sign in again.",
    ),
    "ID_TOKEN_INVALID": (
        "Din inloggning kunde inte kontrolleras. Logga in igen.",
        "Your sign-in could not be verified. Sign in again.",
    ),
    "ID_TOKEN_MISSING": ("Du behöver logga in.", "You need to sign in."),
    "NOT_AUTHORISED_FOR_SUBJECT": (
        "Du får bara sköta dina egna samtycken och dina barns under 18 år.",
        "You may only manage your own consents and those of your children under 18.",
    ),
    "CONSENT_NOT_FOUND": (
        "Samtycket finns inte, eller så är det inte ditt.",
        "The consent does not exist, or it is not yours.",
    ),
    "CONSENT_ALREADY_WITHDRAWN": (
        "Samtycket är redan återkallat.",
        "The consent is already withdrawn.",
    ),
    "RECEIPT_NOT_FOUND": ("Det finns inget sådant kvitto.", "There is no such receipt."),
    "INVALID_VALIDITY": (
        "Giltighetstiden måste sluta i framtiden och vara högst tre år.",
        "The validity must end in the future and last at most three years.",
    ),
    "UNKNOWN_PURPOSE": (
        "Ändamålet finns inte i ändamålsregistret.",
        "The purpose is not in the purpose registry.",
    ),
    "UNKNOWN_DATASET": ("Uppgifterna finns inte i katalogen.", "The data is not in the catalogue."),
    "UNKNOWN_FIELDS": (
        "Några av uppgifterna finns inte i katalogen.",
        "Some of the data items are not in the catalogue.",
    ),
    "SUBJECT_NOT_FOUND": (
        "Personen finns inte i folkbokföringen (demo).",
        "The person is not in the population register (demo).",
    ),
    "POLICY_UNAVAILABLE": (
        "Tjänsten kan inte pröva begäran just nu. Ingenting har ändrats. Försök igen om en stund.",
        "The service cannot assess requests right now. Nothing was changed. Try again later.",
    ),
    "PROVIDER_UNAVAILABLE": (
        "En myndighet svarar inte just nu. Försök igen om en stund.",
        "An agency is not answering right now. Try again in a while.",
    ),
    "AUDIT_UNAVAILABLE": (
        "Tjänsten kan inte logga just nu och gör därför ingenting. Försök igen om en stund.",
        "The service cannot keep its log right now, so it does nothing. Try again later.",
    ),
    "RATE_LIMITED": (
        "För många förfrågningar på kort tid. Vänta en stund och försök igen.",
        "Too many requests in a short time. Wait a while and try again.",
    ),
}

# When the reason is unknown, a sentence by gRPC status code.
ERRORS_BY_CODE: Mapping[str, tuple[str, str]] = {
    "INVALID_ARGUMENT": (
        "Uppgifterna i begäran var inte giltiga.",
        "The request contained data that is not valid.",
    ),
    "UNAUTHENTICATED": ERRORS["ID_TOKEN_INVALID"],
    "PERMISSION_DENIED": (
        "Du har inte behörighet att göra det här.",
        "You are not allowed to do this.",
    ),
    "NOT_FOUND": ("Det du letar efter finns inte.", "What you are looking for does not exist."),
    "ALREADY_EXISTS": ("Det är redan gjort.", "That has already been done."),
    "FAILED_PRECONDITION": (
        "Det går inte att göra det här just nu.",
        "This cannot be done right now.",
    ),
    "RESOURCE_EXHAUSTED": ERRORS["RATE_LIMITED"],
    "UNAVAILABLE": (
        "Tjänsten är inte tillgänglig just nu. Ingenting har ändrats. Försök igen om en stund.",
        "The service is not available right now. Nothing was changed. Try again in a while.",
    ),
    "DEADLINE_EXCEEDED": (
        "Tjänsten svarade inte i tid. Försök igen om en stund.",
        "The service did not answer in time. Try again in a while.",
    ),
}

# Reasons a policy decision gives, as shown in the timeline.
POLICY_REASONS: Mapping[str, tuple[str, str]] = {
    "CONSENT_MISSING": (
        "Det fanns inget samtycke eller ingen begäran från dig för detta.",
        "There was no consent or request from you for this.",
    ),
    "CONSENT_WITHDRAWN": ("Du hade återkallat ditt samtycke.", "You had withdrawn your consent."),
    "CONSENT_EXPIRED": ("Ditt samtycke hade gått ut.", "Your consent had expired."),
    "CONSENT_NOT_YET_VALID": ("Ditt samtycke gällde ännu inte.", "Your consent was not yet valid."),
    "CONSENT_KIND_MISMATCH": (
        "Ditt samtycke var av fel slag för det här ändamålet.",
        "Your consent was of the wrong kind for this purpose.",
    ),
    "CONSENT_SCOPE_MISMATCH": (
        "Ditt samtycke gällde inte de här uppgifterna eller den här mottagaren.",
        "Your consent did not cover this data or this recipient.",
    ),
    "CONSENT_NOT_GIVEN_BY_SUBJECT": (
        "Samtycket var inte givet av dig eller din vårdnadshavare.",
        "The consent was not given by you or your guardian.",
    ),
    "GUARDIAN_CONSENT_REQUIRED": (
        "För barn under 18 krävs samtycke från en vårdnadshavare.",
        "For children under 18 a guardian's consent is required.",
    ),
    "FIELDS_NOT_PERMITTED": (
        "Myndigheten bad om fler uppgifter än ändamålet tillåter; inget lämnades ut.",
        "The agency asked for more data than the purpose allows; nothing was shared.",
    ),
    "DATASET_NOT_ALLOWED_FOR_PURPOSE": (
        "De här uppgifterna får inte användas för det ändamålet.",
        "This data may not be used for that purpose.",
    ),
    "LEGAL_BASIS_MISMATCH": (
        "Myndigheten angav fel rättslig grund.",
        "The agency cited the wrong lawful basis.",
    ),
    "REQUESTER_NOT_AUTHORISED": (
        "Myndigheten har inte behörighet för det ändamålet.",
        "The agency is not authorised for that purpose.",
    ),
    "PROTECTED_IDENTITY": (
        "Du har skyddade personuppgifter, så uppgifterna lämnades inte ut.",
        "You have protected personal data, so nothing was shared.",
    ),
    "SPECIAL_CATEGORY_BASIS_MISSING": (
        "Känsliga uppgifter kräver ett särskilt lagstöd som saknades.",
        "Sensitive data needs a specific legal basis, which was missing.",
    ),
    "TRANSFER_NOT_ADEQUATE": (
        "Uppgifterna får inte lämnas till mottagarens land.",
        "The data may not go to the recipient's country.",
    ),
    "PROVIDER_MISMATCH": (
        "Uppgifterna begärdes från fel myndighet.",
        "The data was asked for from the wrong agency.",
    ),
    "UNKNOWN_PURPOSE": ("Ändamålet är inte registrerat.", "The purpose is not registered."),
    "UNKNOWN_DATASET": ("Uppgifterna finns inte i katalogen.", "The data is not in the catalogue."),
    "INPUT_INVALID": ("Begäran var ofullständig.", "The request was incomplete."),
    "RECORD_NOT_FOUND": (
        "Myndigheten hade inga sådana uppgifter om dig.",
        "The agency held no such data about you.",
    ),
}


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[1] if lang == "en" else pair[0]


def text(lang: str, key: str, **values: object) -> str:
    """The interface text ``key`` in ``lang``, with ``{name}`` placeholders filled in."""
    template = _pick(MESSAGES[key], lang)
    return template.format(**values) if values else template


def error_sentence(lang: str, reason: str, code: str = "") -> str:
    """A plain sentence for a broker error's ``ErrorInfo`` reason (or, failing that, code)."""
    pair = ERRORS.get(reason) or POLICY_REASONS.get(reason) or ERRORS_BY_CODE.get(code)
    return _pick(pair, lang) if pair else text(lang, "error_internal")


def policy_reason(lang: str, code: str, fallback: str = "") -> str:
    """A plain sentence for a policy reason; the broker's own message if we have none."""
    pair = POLICY_REASONS.get(code)
    if pair:
        return _pick(pair, lang)
    return fallback or code


def language(value: str | None) -> str:
    """``value`` if it is a supported language, else the default."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Translator:
    """``t("key", name=value)`` in templates, bound to one language."""

    lang: str

    def __call__(self, key: str, **values: object) -> str:
        return text(self.lang, key, **values)
