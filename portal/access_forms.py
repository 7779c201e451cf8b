"""Forms of the access administration pages: names in, users and groups out, with messages
that say which name is unknown."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from agents.models import Agent
from portal.access import PERMISSION_LABELS, PERMISSIONS, ROLES, check_permission

User = get_user_model()


class AccessSearchForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=100,
                        widget=forms.TextInput(attrs={"type": "search",
                                                      "placeholder": "Name or slug"}))


class AccessChangeForm(forms.Form):
    """One permission for one person (username) or one group (name) on the page's agent."""

    user = forms.CharField(required=False, label="Person", max_length=150,
                           widget=forms.TextInput(attrs={"list": "access-usernames",
                                                         "placeholder": "username"}))
    group = forms.CharField(required=False, label="or group", max_length=150)
    permission = forms.CharField(label="Permission", widget=forms.Select(
        choices=[(c, PERMISSION_LABELS[c]) for c in PERMISSIONS]))

    def clean_user(self):
        username = self.cleaned_data["user"].strip()
        if not username:
            return None
        user = User.objects.filter(username=username).first()
        if user is None:
            raise ValidationError(f"There is no user named '{username}'; give a username "
                                  "as it appears in the admin.")
        return user

    def clean_group(self):
        name = self.cleaned_data["group"].strip()
        if not name:
            return None
        group = Group.objects.filter(name=name).first()
        if group is None:
            raise ValidationError(f"There is no group named '{name}'; create it in the "
                                  "admin first.")
        return group

    def clean_permission(self):
        try:
            return check_permission(self.cleaned_data["permission"])
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None

    def clean(self):
        data = super().clean()
        if "user" in data and "group" in data and (data["user"] is None) == (
                data["group"] is None):
            raise ValidationError("Give either a person or a group (not both).")
        return data

    def service_kwargs(self) -> dict:
        return {key: self.cleaned_data[key] for key in ("user", "group", "permission")}


class BulkGrantForm(forms.Form):
    """A role for a group across the agents ticked."""

    group = forms.ModelChoiceField(
        queryset=Group.objects.order_by("name"), to_field_name="name", empty_label=None,
        error_messages={"invalid_choice": "There is no such group; choose one from the list.",
                        "required": "Choose the group to grant the role to."})
    role = forms.ChoiceField(
        choices=[(name, f"{name} · {' + '.join(PERMISSION_LABELS[c].lower() for c in perms)}")
                 for name, perms in ROLES.items()],
        error_messages={"invalid_choice": f"Choose one of the roles: {', '.join(ROLES)}."})
    agents = forms.ModelMultipleChoiceField(
        queryset=Agent.objects.order_by("name"), to_field_name="slug",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Tick at least one agent.",
                        "invalid_choice": "There is no agent '%(value)s'; tick agents from "
                                          "the list."})
