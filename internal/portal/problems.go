package portal

import "net/http"

// problemPage is one of the portal's plain explanations: what happened,
// what the admin can do next. Never an internal error text.
type problemPage struct {
	Title    string
	Message  string
	Next     string
	Tone     string // banner class: bad, warn, info
	Link     string
	LinkText string
}

var (
	problemNotFound = problemPage{Title: "Page not found", Message: "There is no page at this address.",
		Tone: "warn", Link: "/", LinkText: "My updates"}
	problemInternal = problemPage{Title: "Something went wrong", Message: "The portal could not complete this request. Nothing was changed.",
		Next: "Try again in a minute; if it keeps failing, tell your provider.", Tone: "bad", Link: "/", LinkText: "My updates"}
	problemCSRF = problemPage{Title: "The form has expired", Message: "This form was not sent from the page the portal gave you (or that page is too old), so nothing was done.",
		Next: "Open the page again and resend the form.", Tone: "bad", Link: "/", LinkText: "My updates"}
	problemSignedOut = problemPage{Title: "Please sign in", Message: "Your session has ended, so nothing was done.",
		Tone: "warn", Link: "/sign-in", LinkText: "Sign in"}
	problemLinkExpired = problemPage{Title: "This link has expired", Message: "Links in update emails work for a limited time and never after the decision's deadline. Nothing was done.",
		Next: "Sign in to see your updates as they stand now.", Tone: "warn", Link: "/sign-in", LinkText: "Sign in"}
	problemLinkUsed = problemPage{Title: "This link was already used", Message: "Each link in an update email works once. Nothing more was done.",
		Next: "Sign in to see your updates as they stand now.", Tone: "warn", Link: "/sign-in", LinkText: "Sign in"}
	problemLinkInvalid = problemPage{Title: "This link is not valid", Message: "The link is incomplete or was altered, so nothing was done. Copy the whole link from the email, or sign in.",
		Tone: "bad", Link: "/sign-in", LinkText: "Sign in"}
	problemNotAdmin = problemPage{Title: "You are not an admin of this instance", Message: "Only the instance's admins, as your provider lists them now, decide about its updates. Nothing was done.",
		Next: "If you should be one, ask another admin or your provider to add you.", Tone: "bad", Link: "/", LinkText: "My updates"}
	problemClosed     = problemPage{Title: "This update can no longer change", Tone: "warn", Link: "/", LinkText: "My updates"}
	problemSlotFilled = problemPage{Title: "That slot has just filled", Message: "Another instance took the last place in a slot you chose, so the update was not moved.",
		Next: "Choose again from the slots that still have room.", Tone: "warn", LinkText: "Choose again"}
	problemNothingToApprove = problemPage{Title: "Nothing to approve", Tone: "info", Link: "/sign-in", LinkText: "Sign in to see your updates"}
	problemBadChoice        = problemPage{Title: "That choice is not possible", Tone: "bad", Link: "/", LinkText: "My updates"}
)

// problem renders p with status.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, status int, p problemPage) {
	s.render(w, r, status, "problem", p.Title, p)
}
