"""The embeds' words, in English and French."""

from __future__ import annotations

LANGS = ("en", "fr")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "merci": "Merci",
        "count_one": "{n} click", "count_many": "{n} clicks",
        "label_logged_out": "Merci: log in to thank {title}",
        "label_can_click": "Merci: thank {title}",
        "label_clicked": "You thanked {title} this month",
        "label_own": "{title} is yours",
        "label_no_means": "Top up your Merci balance to thank {title}",
        "state_logged_out": "Log in", "state_clicked": "Thanked", "state_own": "Yours", "state_no_means": "Top up",
        "announce_clicked": "Thank you! Your click counts this month.",
        "error_title": "This button or link cannot be used",
        "login_title": "Log in to Merci", "email": "Email", "password": "Password", "tenant": "Platform",
        "log_in": "Log in", "logged_in_as": "Logged in as {handle}.", "closing": "You can close this window.",
        "wrong_login": "Wrong email or password.",
        "submit_title": "Say merci", "by": "by {owner}", "unclaimed": "not yet claimed by its creator",
        "confirm": "Merci!", "thanks_title": "Thank you", "thanks": "Your click was accepted: {title} gets a "
        "share of your monthly budget.", "back": "Back to the page", "already": "You already thanked it this month.",
        "own": "This is your own thing: you cannot click it.", "no_means": "Top up your balance to click.",
        "log_in_to_click": "Log in to say merci",
        "consent_title": "Link your Merci account", "consent_ask": "{client} ({partner}) asks to:",
        "consent_as": "You are logged in as {handle}.", "allow": "Allow", "deny": "Deny",
        "consent_revoke": "You can revoke this link at any time from your Merci account.",
        "forbidden": "This request did not come from a Merci page; nothing was done.",
    },
    "fr": {
        "merci": "Merci",
        "count_one": "{n} clic", "count_many": "{n} clics",
        "label_logged_out": "Merci : connectez-vous pour remercier {title}",
        "label_can_click": "Merci : remercier {title}",
        "label_clicked": "Vous avez remercié {title} ce mois-ci",
        "label_own": "{title} vous appartient",
        "label_no_means": "Approvisionnez votre solde Merci pour remercier {title}",
        "state_logged_out": "Connexion", "state_clicked": "Merci envoyé", "state_own": "À vous",
        "state_no_means": "Approvisionner",
        "announce_clicked": "Merci ! Votre clic compte pour ce mois-ci.",
        "error_title": "Ce bouton ou ce lien est inutilisable",
        "login_title": "Connexion à Merci", "email": "Adresse e-mail", "password": "Mot de passe",
        "tenant": "Plateforme", "log_in": "Se connecter", "logged_in_as": "Connecté·e en tant que {handle}.",
        "closing": "Vous pouvez fermer cette fenêtre.", "wrong_login": "Adresse e-mail ou mot de passe incorrect.",
        "submit_title": "Dire merci", "by": "par {owner}", "unclaimed": "pas encore revendiqué par son auteur",
        "confirm": "Merci !", "thanks_title": "Merci à vous", "thanks": "Votre clic est accepté : {title} reçoit "
        "une part de votre budget mensuel.", "back": "Retour à la page",
        "already": "Vous l’avez déjà remercié ce mois-ci.",
        "own": "C’est votre propre contenu : vous ne pouvez pas le cliquer.",
        "no_means": "Approvisionnez votre solde pour cliquer.", "log_in_to_click": "Connectez-vous pour dire merci",
        "consent_title": "Lier votre compte Merci", "consent_ask": "{client} ({partner}) demande à :",
        "consent_as": "Vous êtes connecté·e en tant que {handle}.", "allow": "Autoriser", "deny": "Refuser",
        "consent_revoke": "Vous pouvez révoquer ce lien à tout moment depuis votre compte Merci.",
        "forbidden": "Cette requête ne vient pas d’une page de Merci ; rien n’a été fait.",
    },
}

SCOPE_TEXT = {
    "en": {"clicks:write": "send Merci clicks on your behalf, from your monthly budget"},
    "fr": {"clicks:write": "envoyer des clics Merci en votre nom, sur votre budget mensuel"},
}

ERROR_TEXT = {  # userErrors codes a supporter may meet on a page
    "fr": {
        "ALREADY_THIS_MONTH": "Vous l’avez déjà remercié ce mois-ci.",
        "OWN_THING": "C’est votre propre contenu : vous ne pouvez pas le cliquer.",
        "NO_MEANS": "Approvisionnez votre solde avant de cliquer.",
        "UNAVAILABLE": "Les clics ne peuvent pas être acceptés pour l’instant ; réessayez.",
        "UNKNOWN_THING": "Ce contenu n’existe pas.",
        "UNKNOWN_OWNER": "Aucun auteur Merci ne porte ce nom.",
    },
}


def count(lang: str, n: int) -> str:
    return TEXT[lang]["count_one" if n == 1 else "count_many"].format(n=n)


def error_message(lang: str, code: str, default: str) -> str:
    return ERROR_TEXT.get(lang, {}).get(code, default)
